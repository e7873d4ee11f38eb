"""Retries as the user reads them: Retry-After pauses, caps, nonsense values, one line each.

Issue 17 rows 3 and 4, issue 12 point 2.
"""

from __future__ import annotations

import email.utils
import re
import time
import typing as t

import pytest

from sandbox import FaultSettings
from tests.helpers import parse_messages, run_cli
from tests.hostile import Exchange, HostileServer, empty_respondent_page, respondent_config

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

TOO_MANY = b'{"error": "too many requests"}'


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "OverflowError" not in stderr


def test_a_retry_is_one_readable_line(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.settings.faults = FaultSettings(
        rate=0.2, seed=4, kinds=("500",), providers=("perform_engage",)
    )
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_retries": 8}
    completed = run_cli([], config, tmp_path)

    assert completed.returncode == 0, completed.stderr[-2000:]
    retry_lines = [line for line in completed.stderr.splitlines() if "retrying in" in line]
    assert retry_lines
    pattern = re.compile(
        r"Perform & Engage 365: GET /conversation(s|_plans)/(\S+/)? answered HTTP 500 "
        r"Internal Server Error, retrying in \d+(\.\d)? s \(attempt \d of 9\)$"
    )
    for line in retry_lines:
        assert pattern.search(line), line
    assert "ERROR" not in completed.stderr
    assert "Backing off" not in completed.stderr
    assert "<function" not in completed.stderr


def test_a_long_retry_after_past_the_cap_ends_the_run_with_one_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.settings.faults = FaultSettings(
        rate=1.0, kinds=("429",), providers=("respondent",), retry_after_seconds=3600
    )
    config = {"respondent": sandbox.tap_config()["respondent"]}
    completed = run_cli([], config, tmp_path, timeout=60)

    assert completed.returncode == 1
    assert sandbox.count("respondent") == 1  # not retried: waiting would outlast the cap
    last = completed.stderr.strip().splitlines()[-1]
    assert (
        "Respondent stream 'respondent_conversations': GET /messaging/conversations answered "
        "HTTP 429 Too Many Requests and asks to wait 3600 s (60 min) (Retry-After), longer "
        "than max_retry_after_seconds (600 s)" in last
    )
    assert parse_messages(completed.stdout)[-1]["type"] == "STATE"
    no_traceback(completed.stderr)


def hour_ahead() -> str:
    return email.utils.formatdate(time.time() + 3600, usegmt=True)


@pytest.mark.parametrize(
    "retry_after", ["3600", "1e308", "hour_ahead"], ids=["seconds", "1e308", "http-date"]
)
def test_retry_after_values_past_the_cap_say_so(tmp_path: Path, retry_after: str) -> None:
    value = hour_ahead() if retry_after == "hour_ahead" else retry_after

    def script(exchange: Exchange) -> None:
        exchange.reply(429, TOO_MANY, headers={"Retry-After": value})

    with HostileServer(script) as server:
        config = respondent_config(server.url, max_retry_after_seconds=1800)
        completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert len(server.requests) == 1
    assert "(Retry-After), longer than max_retry_after_seconds (1800 s)" in completed.stderr
    no_traceback(completed.stderr)


@pytest.mark.parametrize("retry_after", ["inf", "-inf", "nan", "soon", "1e999"])
def test_unusable_retry_after_is_ignored_not_a_traceback(tmp_path: Path, retry_after: str) -> None:
    def script(exchange: Exchange) -> None:
        if exchange.number == 1:
            exchange.reply(429, TOO_MANY, headers={"Retry-After": retry_after})
        else:
            empty_respondent_page(exchange)

    with HostileServer(script) as server:
        completed = run_cli([], respondent_config(server.url), tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert len(server.requests) == 2
    assert f"its Retry-After '{retry_after}' is not usable, ignored" in completed.stderr
    no_traceback(completed.stderr)


def test_a_retry_after_within_the_cap_is_named_and_waited_out(tmp_path: Path) -> None:
    arrivals: list[float] = []

    def script(exchange: Exchange) -> None:
        arrivals.append(time.monotonic())
        if exchange.number == 1:
            exchange.reply(503, b"{}", headers={"Retry-After": "2"})
        else:
            empty_respondent_page(exchange)

    with HostileServer(script) as server:
        completed = run_cli([], respondent_config(server.url), tmp_path, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (
        "Respondent: GET /messaging/conversations answered HTTP 503 Service Unavailable, "
        "retrying in 2.0 s as its Retry-After asks (every Respondent request waits) "
        "(attempt 2 of 6)" in completed.stderr
    )
    # Not a speed check: the retry must not come before the server said it may.
    assert arrivals[1] - arrivals[0] >= 2
