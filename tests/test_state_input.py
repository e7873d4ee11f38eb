"""A state the tap cannot start from: one line naming the state file, the stream and the
problem, exit 1, no traceback and no request (issue 17, row 13)."""

from __future__ import annotations

import json
import typing as t

import pytest

from tap_conversations.state_input import StateInputError
from tap_conversations.tap import TapConversations
from tests.helpers import parse_messages, run_cli

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox


def bookmark(value: t.Any) -> str:
    entry = {"replication_key": "last_updated_on", "replication_key_value": value}
    return json.dumps({"bookmarks": {"onq_conversations": entry}})


def partition_bookmark(value: t.Any) -> str:
    partition = {"context": {"project_id": "p1"}, "replication_key_value": value}
    return json.dumps({"bookmarks": {"respondent_conversations": {"partitions": [partition]}}})


CASES = {
    "a date that is not ISO-8601": (
        bookmark("01/05/2024"),
        ["stream 'onq_conversations'", "replication_key_value", '"01/05/2024"', "not an ISO"],
    ),
    "an integer": (bookmark(1704412800), ["stream 'onq_conversations'", "an integer 1704412800"]),
    "out of range in UTC": (bookmark("0001-01-01T00:00:00+01:00"), ["out of range"]),
    "a partition's bookmark": (
        partition_bookmark("yesterday"),
        ["stream 'respondent_conversations'", "partitions[0].replication_key_value"],
    ),
    "corrupt JSON": ('{"bookmarks": {"onq_conversations": {', ["is not valid JSON", "line 1"]),
    "a list": ("[1, 2, 3]", ["is a list [1, 2, 3]", "expected an object"]),
    "bookmarks that are not an object": ('{"bookmarks": [1]}', ["'bookmarks' is a list"]),
    "a stream entry that is not an object": (
        '{"bookmarks": {"onq_conversations": 5}}',
        ["stream 'onq_conversations'", "an integer 5"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_state_file_is_one_line_naming_file_and_stream(
    sandbox: Sandbox, tmp_path: Path, case: str
) -> None:
    text, needles = CASES[case]
    state_file = tmp_path / "state.json"
    state_file.write_text(text)
    config = {"onq": sandbox.tap_config()["onq"], "respondent": sandbox.tap_config()["respondent"]}
    completed = run_cli(["--state", str(state_file)], config, tmp_path)

    assert completed.returncode == 1
    lines = [line for line in completed.stderr.splitlines() if f"state file '{state_file}'" in line]
    assert len(lines) == 1, completed.stderr[-2000:]
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    assert sandbox.requests == [], "a request was sent before the state was checked"


def test_a_good_state_file_still_works(sandbox: Sandbox, tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(bookmark("2000-01-01T00:00:00Z"))
    completed = run_cli(
        ["--state", str(state_file)], {"onq": sandbox.tap_config()["onq"]}, tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert '"type":"RECORD"' in completed.stdout.replace(" ", "")


def test_a_state_given_in_process_is_checked_too(sandbox: Sandbox) -> None:
    with pytest.raises(StateInputError, match=r"^The state, stream 'onq_conversations': bookmark"):
        TapConversations(config={"onq": sandbox.tap_config()["onq"]}, state=json.loads(bookmark(5)))


PROJECT = "5f0c8b8e1c9d440000a1b2c3"  # Respondent project ids are MongoDB ids


def test_partitions_no_stream_reads_are_dropped_once_with_one_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A state from another version or tool with 100,000 child partitions (issue 28 row 14):
    they are dropped, said once, and no STATE carries them."""
    details = "perform_engage_conversation_details"
    partitions = [
        {"context": {"api_id": f"580:{n}"}, "replication_key": "updated_date"}
        for n in range(100_000)
    ]
    projects = [
        {"context": {"project_id": PROJECT}, "replication_key_value": "2024-01-01T00:00:00+00:00"},
        {"context": {"api_id": "x"}},
    ]
    state = {
        "bookmarks": {
            details: {"partitions": partitions},
            "respondent_conversations": {"partitions": projects},
            "not_a_stream_here": {"partitions": [{"context": {"a": 1}}]},
        }
    }
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(state))
    config = {
        "perform_engage": sandbox.tap_config()["perform_engage"],
        "respondent": {**sandbox.tap_config()["respondent"], "project_ids": [PROJECT]},
    }
    completed = run_cli(
        ["--state", str(state_file)], config, tmp_path, env={"TAP_CONVERSATIONS_LOGLEVEL": "INFO"}
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [line for line in completed.stderr.splitlines() if "state partition" in line]
    assert len(lines) == 2, lines
    assert any(f"{details}: dropped 100000 state partition(s)" in line for line in lines)
    assert any("respondent_conversations: dropped 1 state partition(s)" in line for line in lines)
    states = [m["value"] for m in parse_messages(completed.stdout) if m["type"] == "STATE"]
    assert states
    assert max(len(json.dumps(s)) for s in states) < 100_000
    last = states[-1]["bookmarks"]
    assert "partitions" not in last[details]
    assert [p["context"] for p in last["respondent_conversations"]["partitions"]] == [
        {"project_id": PROJECT}
    ]
    assert last["not_a_stream_here"] == state["bookmarks"]["not_a_stream_here"]
