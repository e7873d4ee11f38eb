"""Retries as the user reads them: Retry-After pauses, caps, nonsense values, one line each.

Issue 17 rows 3 and 4, issue 12 point 2. In-process, with the request gates' waits skipped
(`tests.waits`), except one CLI run for the one-line exit.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
import typing as t

import pytest

from sandbox import FaultSettings
from tap_conversations.errors import ProviderError
from tests.helpers import parse_messages, run_cli, sync
from tests.hostile import Exchange, HostileServer, empty_respondent_page, respondent_config
from tests.waits import skip_waits

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

TOO_MANY = b'{"error": "too many requests"}'


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "OverflowError" not in stderr


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]


def test_a_retry_is_one_readable_line(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    waits = skip_waits(monkeypatch)
    sandbox.settings.faults = FaultSettings(
        rate=0.2, seed=4, kinds=("500",), providers=("perform_engage",)
    )
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_retries": 8}
    with caplog.at_level(logging.INFO):
        sync(config)

    lines = retry_lines(caplog)
    assert lines
    pattern = re.compile(
        r"^Perform & Engage 365: GET /conversation(s|_plans)/(\S+/)? answered HTTP 500 "
        r"Internal Server Error, retrying in (\d+\.\d) s \(attempt \d of 9\)$"
    )
    said = []
    for line in lines:
        match = pattern.search(line)
        assert match, line
        said.append(float(match[3]))
    # One line per wait, saying the wait the gate was asked for: 0.5 s, 1 s, 2 s ... + jitter.
    assert said == [round(wait, 1) for wait in waits.waits]
    assert all(0.5 <= wait <= 31 for wait in waits.waits)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not [r for r in caplog.records if "Backing off" in r.getMessage()]
    assert not [r for r in caplog.records if "<function" in r.getMessage()]


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
def test_retry_after_values_past_the_cap_say_so(
    monkeypatch: pytest.MonkeyPatch, retry_after: str
) -> None:
    waits = skip_waits(monkeypatch)
    value = hour_ahead() if retry_after == "hour_ahead" else retry_after

    def script(exchange: Exchange) -> None:
        exchange.reply(429, TOO_MANY, headers={"Retry-After": value})

    with HostileServer(script) as server, pytest.raises(ProviderError) as failure:
        sync(respondent_config(server.url, max_retry_after_seconds=1800))
    assert len(server.requests) == 1
    assert "(Retry-After), longer than max_retry_after_seconds (1800 s)" in str(failure.value)
    assert waits.waits == []


@pytest.mark.parametrize("retry_after", ["inf", "-inf", "nan", "soon", "1e999"])
def test_unusable_retry_after_is_ignored_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, retry_after: str
) -> None:
    waits = skip_waits(monkeypatch)

    def script(exchange: Exchange) -> None:
        if exchange.number == 1:
            exchange.reply(429, TOO_MANY, headers={"Retry-After": retry_after})
        else:
            empty_respondent_page(exchange)

    with HostileServer(script) as server, caplog.at_level(logging.INFO):
        sync(respondent_config(server.url))
    assert len(server.requests) == 2
    (line,) = retry_lines(caplog)
    assert f"its Retry-After '{retry_after}' is not usable, ignored" in line
    (wait,) = waits.waits  # the backoff's first wait instead: 0.5 s plus up to 1 s of jitter
    assert 0.5 <= wait <= 1.5


def test_a_retry_after_within_the_cap_is_named_and_waited_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    waits = skip_waits(monkeypatch)

    def script(exchange: Exchange) -> None:
        if exchange.number == 1:
            exchange.reply(503, b"{}", headers={"Retry-After": "2"})
        else:
            empty_respondent_page(exchange)

    with HostileServer(script) as server, caplog.at_level(logging.INFO):
        sync(respondent_config(server.url))
    assert len(server.requests) == 2
    assert retry_lines(caplog) == [
        "Respondent: GET /messaging/conversations answered HTTP 503 Service Unavailable, "
        "retrying in 2.0 s as its Retry-After asks (attempt 2 of 6)"
    ]
    # The retry was not sent before the server said it may; a lone 503 holds only its own
    # request (issue 27), a 429 every worker (tests/test_concurrency.py, for real).
    assert waits.waits == [2.0]
