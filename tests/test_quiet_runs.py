"""What a user reads on stderr: a quiet successful run, METRIC lines on request, no SDK ERROR
lines on success or in front of the tap's own error, and providers that fail independently."""

from __future__ import annotations

import typing as t

import pytest

from sandbox import FaultSettings
from tap_conversations.progress import StreamProgress
from tests.helpers import parse_messages, run_cli

if t.TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from sandbox import Sandbox

#: The default level, whatever the environment running the tests says.
DEFAULT_LEVEL = {"TAP_CONVERSATIONS_LOGLEVEL": "INFO", "LOGLEVEL": "INFO"}


def lines_at(completed: subprocess.CompletedProcess[str], level: str) -> list[str]:
    return [line for line in completed.stderr.splitlines() if f"| {level} " in line]


@pytest.fixture
def account(sandbox_factory: t.Callable[..., Sandbox]) -> Sandbox:
    """1,000+ records across the three providers, with details and messages."""
    return sandbox_factory(
        pe_conversations=300,
        pe_plans=10,
        onq_conversations=250,
        respondent_conversations=60,
    )


def test_a_successful_run_at_the_default_level_is_a_few_dozen_lines(
    account: Sandbox, tmp_path: Path
) -> None:
    completed = run_cli([], account.tap_config(), tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 0, completed.stderr

    records = sum(1 for m in parse_messages(completed.stdout) if m["type"] == "RECORD")
    assert records >= 1_000
    stderr = completed.stderr.splitlines()
    assert len(stderr) <= 50, "\n".join(stderr)
    assert not lines_at(completed, "WARNING"), completed.stderr
    assert not lines_at(completed, "ERROR"), completed.stderr
    for chatter in ("METRIC", "Beginning sync", "assumed to be unsorted", "Added '"):
        assert chatter not in completed.stderr, chatter
    for label in ("onQ", "Perform & Engage 365", "Respondent"):
        assert any(f"| {label}: syncing " in line for line in stderr), label
    assert "Sync summary:" in completed.stderr


def test_debug_level_shows_the_per_child_chatter_and_metrics(
    account: Sandbox, tmp_path: Path
) -> None:
    config = {"perform_engage": account.tap_config()["perform_engage"]}
    completed = run_cli([], config, tmp_path, env={"TAP_CONVERSATIONS_LOGLEVEL": "DEBUG"})
    assert completed.returncode == 0, completed.stderr
    beginning = [
        line
        for line in lines_at(completed, "DEBUG")
        if "Beginning sync of 'perform_engage_conversation_details'" in line
    ]
    assert len(beginning) == 300
    assert "METRIC" in completed.stderr


def test_metrics_log_level_info_shows_metric_lines_in_a_normal_run(
    account: Sandbox, tmp_path: Path
) -> None:
    config = {"onq": account.tap_config()["onq"], "metrics_log_level": "INFO"}
    completed = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 0, completed.stderr
    metrics = [line for line in completed.stderr.splitlines() if "METRIC" in line]
    assert any('"metric":"record_count"' in line for line in metrics), metrics
    assert not lines_at(completed, "DEBUG")


def test_test_mode_success_logs_no_error(account: Sandbox, tmp_path: Path) -> None:
    completed = run_cli(["--test"], account.tap_config(), tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 0, completed.stderr
    assert not lines_at(completed, "ERROR"), completed.stderr
    assert "unhandled error" not in completed.stderr


def test_one_providers_failure_leaves_the_others_to_finish(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    # Streams sync in name order: onQ, then Perform & Engage (rejected key), then Respondent
    # (every request a 502), which must still run after Perform & Engage failed.
    sandbox = sandbox_factory(
        pe_conversations=20, pe_plans=3, onq_conversations=30, respondent_conversations=12
    )
    sandbox.settings.faults = FaultSettings(
        rate=1.0, kinds=("502_html",), providers=("respondent",)
    )
    config = sandbox.tap_config()
    config["perform_engage"] = {**config["perform_engage"], "api_key": "not-the-key"}
    config["max_retries"] = 1
    completed = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)

    assert completed.returncode == 1
    respondent_requests = [r for r in sandbox.requests if r.provider == "respondent"]
    assert len(respondent_requests) == 2, "Respondent must run after Perform & Engage failed"
    messages = parse_messages(completed.stdout)
    onq = [m for m in messages if m["type"] == "RECORD" and m["stream"] == "onq_conversations"]
    assert len(onq) == 30
    assert messages[-1]["type"] == "STATE"
    bookmarks = messages[-1]["value"]["bookmarks"]
    assert bookmarks["onq_conversations"]["replication_key_value"]
    assert "perform_engage_conversations" not in bookmarks
    assert "progress_markers" not in str(bookmarks)

    errors = lines_at(completed, "ERROR")
    assert "unhandled error" not in completed.stderr
    summary = errors[-3:]
    assert "2 of 3 providers failed" in summary[0]
    assert (
        "Perform & Engage 365 stream 'perform_engage_conversation_plans': HTTP 401" in (summary[1])
    )
    assert "perform_engage.api_key" in summary[1]
    assert "Respondent stream 'respondent_conversations': gave up" in summary[2]
    assert "Traceback" not in completed.stderr


def test_a_failure_within_a_provider_ends_that_provider(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(pe_conversations=20, pe_plans=3, onq_conversations=5)
    sandbox.settings.faults = FaultSettings(
        rate=1.0, kinds=("502_html",), providers=("perform_engage",)
    )
    config = {**sandbox.tap_config(), "max_retries": 0}
    del config["respondent"]
    completed = run_cli([], config, tmp_path, env=DEFAULT_LEVEL)
    assert completed.returncode == 1
    pe_requests = [r for r in sandbox.requests if r.provider == "perform_engage"]
    assert len(pe_requests) == 1, "the second Perform & Engage stream must not start"
    assert "1 of 2 providers failed" in completed.stderr


@pytest.mark.parametrize(
    ("requests", "retries", "expected"),
    [
        (1, 0, "1 request, 0 retries"),
        (2, 1, "2 requests, 1 retry"),
        (1_000, 2, "1,000 requests, 2 retries"),
    ],
)
def test_progress_counts_are_pluralised(requests: int, retries: int, expected: str) -> None:
    line = StreamProgress(records=3, requests=requests, retries=retries).line("s")
    assert expected in line
