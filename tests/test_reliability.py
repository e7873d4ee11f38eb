"""Faults, bad config, secrets and inconsistent paging."""

from __future__ import annotations

import json
import typing as t

import pytest

from sandbox import FaultSettings
from tests.helpers import assert_same_records, parse_messages, run_cli, sync
from tests.hostile import closed_port
from tests.waits import skip_waits

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


def test_a_fifth_of_requests_faulted_still_delivers_every_record_once(
    sandbox_factory: t.Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits = skip_waits(monkeypatch)  # the timeouts of slow answers stay real
    sandbox = sandbox_factory(
        pe_conversations=40,
        pe_plans=5,
        pe_max_limit=10,
        onq_conversations=40,
        respondent_conversations=25,
    )
    sandbox.settings.faults = FaultSettings(
        rate=0.2, seed=20, retry_after_seconds=1, slow_seconds=1.5
    )
    config = {**sandbox.tap_config(), "request_timeout_seconds": 1, "max_retries": 8}
    result = sync(config)

    data = sandbox.data
    assert_same_records(
        result.records("perform_engage_conversations"), data.pe_conversations, "api_id"
    )
    assert_same_records(
        result.records("perform_engage_conversation_details"),
        list(data.pe_conversation_details.values()),
        "api_id",
    )
    assert_same_records(
        result.records("perform_engage_conversation_plans"), data.pe_plans, "api_id"
    )
    onq = [{**r, "id": str(r["id"]), "org_id": str(r["org_id"])} for r in data.onq_conversations]
    assert_same_records(result.records("onq_conversations"), onq, "id")
    assert_same_records(
        result.records("respondent_conversations"), data.respondent_conversations, "uid"
    )
    faulted = {r.fault for r in sandbox.requests if r.fault}
    assert len(faulted) >= 5, f"too few fault kinds drawn to prove anything: {faulted}"
    assert 1.0 in waits.waits  # a Retry-After was honoured


def test_persistent_failure_exits_1_with_one_line_and_a_final_state(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # Streams sync in name order: onQ and Perform & Engage finish before Respondent fails.
    sandbox.settings.faults = FaultSettings(
        rate=1.0, kinds=("502_html",), providers=("respondent",)
    )
    config = {**sandbox.tap_config(), "max_retries": 1}  # one backoff wait, 0.5 s to 1.5 s
    completed = run_cli([], config, tmp_path)

    assert completed.returncode == 1
    last_error = [line for line in completed.stderr.splitlines() if "ERROR" in line][-1]
    assert (
        "Respondent stream 'respondent_conversations': gave up on /respondent/v1/messaging/"
        "conversations after 2 attempts (last answer HTTP 502" in last_error
    )
    messages = parse_messages(completed.stdout)
    assert messages[-1]["type"] == "STATE"
    bookmarks = messages[-1]["value"]["bookmarks"]
    for done in ("onq_conversations", "perform_engage_conversations"):
        assert bookmarks[done]["replication_key_value"], done
    assert "<html" not in completed.stderr.lower()


def test_every_config_mistake_is_reported_at_once(tmp_path: Path) -> None:
    config = {
        "start_date": "last tuesday",
        "perform_engage": {"api_url": "pro.weekly10.net/api/v2", "api_key": "k", "page_size": 0},
        "onq": {
            "api_key": "ONQ-1",
            "api_secret": "s",
            "issuer": "https://a",
            "subject": "b@c",
            "audience": "https://d",
            "token_lifetime_seconds": 60,
        },
    }
    completed = run_cli([], config, tmp_path)
    assert completed.returncode == 1
    for problem in (
        "perform_engage.username: required, not set",
        "perform_engage.api_url: 'pro.weekly10.net/api/v2' is not an http(s) URL",
        "perform_engage.page_size: 0 is less than the minimum of 1",
        "onq.token_lifetime_seconds: 60 is less than the minimum of 600",
        "start_date: 'last tuesday' is not an ISO-8601 date (e.g. 2024-01-31T00:00:00Z)",
    ):
        assert sum(problem in line for line in completed.stderr.splitlines()) == 1, problem
    assert "The tap config has 5 problems" in completed.stderr
    assert "Config validation failed" not in completed.stderr
    assert completed.stdout == ""


def test_no_secret_in_any_output_at_debug_level(sandbox: Sandbox, tmp_path: Path) -> None:
    config = sandbox.tap_config()
    secrets = [
        config["perform_engage"]["api_key"],
        config["onq"]["api_secret"],
        config["respondent"]["api_key"],
        config["respondent"]["api_secret"],
    ]
    debug = {"TAP_CONVERSATIONS_LOGLEVEL": "DEBUG"}
    runs = [
        run_cli([], config, tmp_path, env=debug),
        run_cli(["--about"], config, tmp_path, env=debug),
        run_cli(["--discover"], config, tmp_path, env=debug),
        # A rejected key, which error paths echo more readily.
        run_cli(
            [],
            {"respondent": {**config["respondent"], "api_key": "nearly-" + secrets[2]}},
            tmp_path,
            env=debug,
        ),
    ]
    assert runs[0].returncode == 0
    assert "DEBUG" in runs[0].stderr
    for completed in runs:
        for secret in secrets:
            assert secret not in completed.stdout + completed.stderr


def test_detail_deleted_after_listing_is_a_warning_and_a_skip(sandbox: Sandbox) -> None:
    gone = sandbox.vanish_details("perform_engage", 2)
    result = sync({"perform_engage": sandbox.tap_config()["perform_engage"]})
    details = set(result.keys("perform_engage_conversation_details", "api_id"))
    conversations = set(result.keys("perform_engage_conversations", "api_id"))
    assert details == conversations - set(gone)


@pytest.mark.parametrize(
    ("pathology", "problem"),
    [
        ("repeat_next", "repeats a page already read"),
        ("endless", "empty page that still links"),
        ("count_mismatch", "announced count="),
    ],
)
def test_inconsistent_paging_ends_with_a_clear_error(
    sandbox: Sandbox, tmp_path: Path, pathology: str, problem: str
) -> None:
    sandbox.settings.pe_pathology = pathology  # type: ignore[assignment]
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    completed = run_cli([], config, tmp_path, timeout=60)
    assert completed.returncode == 1
    assert problem in completed.stderr
    assert "Perform & Engage 365 stream 'perform_engage_conversation" in completed.stderr


def test_config_values_are_not_in_about_or_catalog(tmp_path: Path) -> None:
    secret = "s3cr3t-value-91ab"
    # A closed loopback port: `--discover` reads a first page, which must not leave here.
    api_url = f"http://127.0.0.1:{closed_port()}/v1"
    config = {"respondent": {"api_url": api_url, "api_key": secret, "api_secret": secret}}
    for args in (["--about", "--format=json"], ["--discover"]):
        completed = run_cli(args, config, tmp_path)
        assert completed.returncode == 0
        assert secret not in completed.stdout + completed.stderr
        json.loads(completed.stdout)
