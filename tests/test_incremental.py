"""Incremental replication over unsorted lists: nothing lost, nothing repeated without cause."""

from __future__ import annotations

import json
import subprocess
import typing as t

import pytest

from tap_conversations.records import utc_timestamp
from tests.helpers import TAP_EXECUTABLE, SyncResult, parse_messages, sync

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

PE = "perform_engage_conversations"
PE_DETAILS = "perform_engage_conversation_details"
ONQ = "onq_conversations"
RESPONDENT = "respondent_conversations"
MESSAGES = "respondent_messages"

#: provider -> (stream, key, replication key, sandbox records)
STREAMS: dict[str, tuple[str, str, str, t.Callable[[Sandbox], list[dict[str, t.Any]]]]] = {
    "perform_engage": (PE, "api_id", "updated_date", lambda sb: sb.data.pe_conversations),
    "onq": (ONQ, "id", "last_updated_on", lambda sb: sb.data.onq_conversations),
    "respondent": (RESPONDENT, "uid", "updatedAt", lambda sb: sb.data.respondent_conversations),
}


def bookmark_of(state: dict[str, t.Any], stream: str) -> str:
    return str(state["bookmarks"][stream]["replication_key_value"])


def keys_at(records: list[dict[str, t.Any]], key: str, rk: str, instant: str) -> set[str]:
    """Keys of records whose replication value is `instant` (compared as UTC text)."""
    return {str(r[key]) for r in records if utc_timestamp(r[rk]) == instant}


@pytest.mark.parametrize("provider", list(STREAMS))
def test_each_version_is_sent_once(sandbox: Sandbox, provider: str) -> None:
    """A re-run sends exactly what changed upstream, once; with no change, nothing."""
    stream, key, rk, records = STREAMS[provider]
    config = {provider: sandbox.tap_config()[provider]}
    first = sync(config)
    assert len(first.records(stream)) == len(records(sandbox))
    bookmark = bookmark_of(first.final_state, stream)
    assert bookmark == max(utc_timestamp(r[rk]) for r in records(sandbox))

    unchanged = sync(config, state=first.final_state)
    assert unchanged.records(stream) == []

    mutation = sandbox.mutate(provider, changed=4, added=3)
    second = sync(config, state=unchanged.final_state)
    expected = {str(k) for k in mutation.changed_keys + mutation.added_keys}
    assert sorted(str(k) for k in second.keys(stream, key)) == sorted(expected)
    assert bookmark_of(second.final_state, stream) >= bookmark  # never backwards

    third = sync(config, state=second.final_state)
    assert third.records(stream) == []


def test_incremental_run_requests_details_only_for_changed_conversations(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(pe_conversations=300, pe_plans=4, pe_max_limit=50)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    first = sync(config)
    assert sandbox.count(path_startswith="/perform-engage/api/v2/conversations/580") == 300

    mutation = sandbox.mutate("perform_engage", changed=3, added=0)  # 1% of the account
    sandbox.reset_log()
    second = sync(config, state=first.final_state)

    emitted = set(second.keys(PE, "api_id"))
    assert emitted == set(mutation.changed_keys)
    details = sandbox.count(path_startswith="/perform-engage/api/v2/conversations/580")
    assert details == 3
    assert set(second.keys(PE_DETAILS, "api_id")) == emitted
    # Plans have no update timestamp: full table, every run.
    assert len(second.records("perform_engage_conversation_plans")) == 4


def test_child_state_stays_one_bookmark_per_stream(sandbox: Sandbox) -> None:
    result = sync(sandbox.tap_config())
    bookmarks = result.final_state["bookmarks"]
    for child in (PE_DETAILS, "perform_engage_conversation_plan_details", MESSAGES):
        assert "partitions" not in bookmarks.get(child, {}), child
    # Every STATE message is small, whatever the account size.
    assert max(len(json.dumps(s)) for s in result.states) < 2_000
    assert all("progress_markers" not in json.dumps(b) for b in bookmarks.values())


def test_start_date_bounds_the_first_run(sandbox: Sandbox) -> None:
    conversations = sandbox.data.pe_conversations
    cut = sorted(utc_timestamp(c["updated_date"]) for c in conversations)[len(conversations) // 2]
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "start_date": cut}
    result = sync(config)
    expected = {c["api_id"] for c in conversations if utc_timestamp(c["updated_date"]) >= cut}
    assert set(result.keys(PE, "api_id")) == expected
    assert set(result.keys(PE_DETAILS, "api_id")) == expected


def test_deleted_and_archived_conversations_flow_through(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(pe_conversations=40, pe_plans=2, respondent_conversations=80)
    result = sync({"perform_engage": sandbox.tap_config()["perform_engage"]})
    statuses = {r["status"] for r in result.records(PE)}
    assert {"deleted", "archived"} <= statuses
    deleted = {r["uid"] for r in sandbox.data.respondent_conversations if r["deleted"]}
    assert deleted, "the sandbox has no deleted Respondent conversation: the test proves nothing"
    respondent = sync({"respondent": sandbox.tap_config()["respondent"]})
    emitted = {r["uid"]: r for r in respondent.records(RESPONDENT)}
    assert deleted <= set(emitted)
    assert all(emitted[uid]["deleted"] is True for uid in deleted)


def _run_until_killed(
    config_file: Path, state_file: Path, stop_after: int, stream: str
) -> SyncResult:
    """Start the tap, read `stop_after` RECORDs of `stream`, then kill it like an OOM would."""
    with subprocess.Popen(
        [TAP_EXECUTABLE, "--config", str(config_file), "--state", str(state_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as process:
        assert process.stdout is not None
        lines: list[bytes] = []
        records = 0
        for line in process.stdout:
            lines.append(line)
            compact = line.replace(b" ", b"")
            records += b'"type":"RECORD"' in compact and f'"stream":"{stream}"'.encode() in compact
            if records >= stop_after:
                break
        process.kill()
    return SyncResult(parse_messages(b"".join(lines)))


def test_a_killed_run_resumes_where_it_stopped(
    sandbox_factory: t.Callable[..., Sandbox], tmp_path: Path
) -> None:
    """SIGKILL at ~60% of the details: the resumed run does the rest, and little more."""
    parents = 300
    sandbox = sandbox_factory(pe_conversations=parents, pe_plans=1, pe_max_limit=50, latency_ms=2)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"], "max_concurrency": 4}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    state_file = tmp_path / "state.json"
    state_file.write_text("{}")

    killed = _run_until_killed(config_file, state_file, int(parents * 0.6), PE_DETAILS)
    assert killed.states, "the killed run emitted no STATE before it died"
    sent_before_kill = set(killed.keys(PE, "api_id"))
    assert len(sent_before_kill) < parents, "the run finished before it was killed"

    sandbox.reset_log()
    resumed = sync(config, state=killed.final_state)
    every = {c["api_id"] for c in sandbox.data.pe_conversations}
    assert sent_before_kill | set(resumed.keys(PE, "api_id")) == every
    assert set(killed.keys(PE_DETAILS, "api_id")) | set(resumed.keys(PE_DETAILS, "api_id")) == every
    details = sandbox.count(path_startswith="/perform-engage/api/v2/conversations/580")
    assert details <= parents * 0.45, f"the resumed run re-did too much: {details} details"
    assert details == len(resumed.records(PE_DETAILS))
