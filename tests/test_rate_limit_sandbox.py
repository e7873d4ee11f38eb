"""Against the sandbox's token bucket (issue 27): the tap finds the limit and stays under it."""

from __future__ import annotations

import typing as t

import pytest

from tests.helpers import sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox


@pytest.mark.parametrize("headers", [False, True], ids=["refusals only", "with headers"])
def test_a_rate_limited_api_is_read_whole_and_seldom_refuses(
    sandbox_factory: t.Callable[..., Sandbox], headers: bool
) -> None:
    sandbox = sandbox_factory(
        pe_conversations=40,
        pe_plans=1,
        latency_ms=30,
        rate_limit_per_second=20,
        rate_limit_headers=headers,
    )
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 4}
    result = sync(config)

    ids = result.keys("perform_engage_conversation_details", "api_id")
    assert sorted(ids) == sorted(set(ids)), "a record was written twice"
    assert len(ids) == 40
    refused = sandbox.count(status=429)
    # Finding the limit costs what was in flight when the bucket ran dry (at most 4 here).
    # With headers the goal is none; on a loaded machine (a CI run beside other tests) one
    # slipped through once, and bench T sees 3-4 in 330 requests: that goal is not met yet.
    assert refused <= (2 if headers else 4)
    assert sandbox.early_retries == []


def test_the_summary_reports_the_rate_found(
    sandbox_factory: t.Callable[..., Sandbox], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = sandbox_factory(
        pe_conversations=40, pe_plans=1, latency_ms=10, rate_limit_per_second=20
    )
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 4}
    with caplog.at_level("INFO"):
        sync(config)
    summary = next(r.getMessage() for r in caplog.records if "Sync summary" in r.getMessage())
    assert "Perform & Engage 365: rate limit met: about" in summary
    assert sandbox.count(status=429) >= 1


def test_no_limit_stays_quiet(
    sandbox_factory: t.Callable[..., Sandbox], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox = sandbox_factory(pe_conversations=20, pe_plans=1)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 4}
    with caplog.at_level("INFO"):
        sync(config)
    assert not [r for r in caplog.records if "requests/s" in r.getMessage()]
