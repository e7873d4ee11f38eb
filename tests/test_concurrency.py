"""Concurrent detail fetching: same output as serial, shared rate limits, clean failures."""

from __future__ import annotations

import json
import re
import threading
import typing as t

import pytest

from sandbox import FaultSettings
from tap_conversations.errors import ProviderError
from tests.helpers import run_cli, sync
from tests.hostile import Exchange, HostileServer

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


def comparable(messages: list[dict[str, t.Any]]) -> list[str]:
    """Every message as the target sees it, minus the times at which the run happened."""
    text = [json.dumps({k: v for k, v in m.items() if k != "time_extracted"}) for m in messages]
    return [re.sub(r'"replication_key_signpost": "[^"]*"', "", line) for line in text]


def test_concurrent_and_serial_runs_emit_identical_messages(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(
        pe_conversations=90, pe_plans=12, pe_max_limit=25, respondent_conversations=30
    )
    config = sandbox.tap_config()
    serial = sync({**config, "max_concurrency": 1})
    concurrent = sync({**config, "max_concurrency": 8})

    assert serial.counts()["perform_engage_conversation_details"] == 90
    assert comparable(concurrent.messages) == comparable(serial.messages)


def test_details_are_in_flight_together(sandbox_factory: t.Callable[..., Sandbox]) -> None:
    sandbox = sandbox_factory(pe_conversations=40, pe_plans=2, latency_ms=50)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 8}
    sync(config)
    details = sorted(
        (r.arrived, r.arrived + 0.05) for r in sandbox.requests if "/conversations/580" in r.path
    )
    # How many detail requests overlapped at their busiest moment.
    peak = max(sum(1 for s, e in details if s <= start < e) for start, _ in details)
    assert peak >= 4, f"at most {peak} detail requests overlapped"


def test_retry_after_pauses_every_worker(sandbox_factory: t.Callable[..., Sandbox]) -> None:
    sandbox = sandbox_factory(pe_conversations=60, pe_plans=3, latency_ms=5)
    sandbox.settings.faults = FaultSettings(
        rate=0.04, seed=11, kinds=("429", "503_retry_after"), retry_after_seconds=1
    )
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 8}
    result = sync(config)

    assert len(set(result.keys("perform_engage_conversation_details", "api_id"))) == 60
    assert sandbox.count(status=429) + sandbox.count(status=503) >= 2, "too few faults to prove"
    # The sandbox counts a request early if it came during a 429's Retry-After (any path), or
    # during a 503's on the same path.
    assert sandbox.early_retries == [], "a worker sent a request during a Retry-After pause"


def test_a_lone_503_holds_only_its_request(sandbox_factory: t.Callable[..., Sandbox]) -> None:
    """A fault is not a limit (issue 27): the other workers go on during its Retry-After."""
    sandbox = sandbox_factory(pe_conversations=40, pe_plans=1, latency_ms=20)
    sandbox.settings.faults = FaultSettings(
        rate=0.1, seed=3, kinds=("503_retry_after",), retry_after_seconds=2, path_contains="580"
    )
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 8}
    result = sync(config)

    assert len(set(result.keys("perform_engage_conversation_details", "api_id"))) == 40
    first_503 = min(r.arrived for r in sandbox.requests if r.status == 503)  # one at least
    during = [r for r in sandbox.requests if first_503 < r.arrived < first_503 + 1.5]
    assert len(during) >= 5, "every worker waited out one request's Retry-After"
    assert sandbox.early_retries == []


def test_rate_cap_spaces_requests(sandbox_factory: t.Callable[..., Sandbox]) -> None:
    sandbox = sandbox_factory(pe_conversations=20, pe_plans=1, pe_max_limit=50)
    provider = {**sandbox.tap_config()["perform_engage"], "max_requests_per_second": 25}
    sync({"perform_engage": provider, "max_concurrency": 8})
    arrivals = sorted(r.arrived for r in sandbox.requests)
    assert len(arrivals) == 23  # 1 list page + 20 details + 1 plan page + 1 plan detail
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / 25 * 0.95


def test_a_failing_worker_fails_the_run_and_leaves_no_thread_behind(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(pe_conversations=80, pe_plans=2)
    sandbox.settings.faults = FaultSettings(rate=0.3, seed=5, kinds=("500",))
    config = {
        "perform_engage": sandbox.tap_config()["perform_engage"],
        "max_concurrency": 8,
        "max_retries": 0,
    }
    threads_before = set(threading.enumerate())
    with pytest.raises(ProviderError, match=r"Perform & Engage 365 stream .* gave up on /"):
        sync(config)
    # The sandbox's own per-connection threads end when it notices the hang-up; only the
    # tap's threads count here.
    leftover = {
        thread
        for thread in set(threading.enumerate()) - threads_before
        if not thread.name.startswith("sandbox")
    }
    assert leftover == set(), "threads outlived the run"


def test_cli_failure_in_a_worker_is_one_line_and_exit_1(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(pe_conversations=50, pe_plans=2)
    sandbox.settings.faults = FaultSettings(rate=0.3, seed=5, kinds=("500",))
    config = {
        "perform_engage": sandbox.tap_config()["perform_engage"],
        "max_concurrency": 8,
        "max_retries": 0,
    }
    completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if "ERROR" in line]
    assert "gave up on /perform-engage/api/v2/" in errors[-1]
    assert sum("gave up" in line for line in errors) == 1, errors
    assert "Traceback" not in completed.stderr


def test_an_absurd_count_plans_no_page_ahead() -> None:
    """Issue 28 item 4: `count: 10^12` on the first page once made the tap plan that many
    page requests ahead; pages are read one after another, as their links say."""
    server: HostileServer

    def script(exchange: Exchange) -> None:
        if "/conversation_plans/" in exchange.request.path:
            exchange.reply(200, b'{"count": 0, "next": null, "previous": null, "results": []}')
            return
        page = {
            "count": 10**12,
            "next": f"{server.url}/api/v2/conversations/?limit=100&offset=100",
            "previous": None,
            "results": [],
        }
        exchange.reply(200, json.dumps(page).encode())

    with HostileServer(script) as server:
        config = {
            "perform_engage": {"api_url": f"{server.url}/api/v2", "username": "u", "api_key": "k"},
            "max_concurrency": 8,
        }
        with pytest.raises(ProviderError, match="empty page that still links") as failure:
            sync(config)
    assert "stream 'perform_engage_conversations'" in str(failure.value)
    assert server.paths() == [
        "/api/v2/conversation_plans/?limit=100",
        "/api/v2/conversations/?limit=100",
    ]
