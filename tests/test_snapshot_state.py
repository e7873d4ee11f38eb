"""What the tap keeps in STATE, and what it does with a STATE it is given."""

from __future__ import annotations

import json
import logging
import typing as t

import pytest

from tap_conversations.records import utc_timestamp
from tests.helpers import sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox

PE = "perform_engage_conversations"
PE_DETAILS = "perform_engage_conversation_details"
RESPONDENT = "respondent_conversations"
MESSAGES = "respondent_messages"


def test_a_bookmark_in_the_future_is_reported_and_not_kept(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    future = "2099-01-01T00:00:00+00:00"
    state = {
        "bookmarks": {
            PE: {"replication_key": "updated_date", "replication_key_value": future},
            PE_DETAILS: {"replication_key": "updated_date", "replication_key_value": future},
        }
    }
    with caplog.at_level(logging.WARNING):
        result = sync(config, state=state)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for stream in (PE, PE_DETAILS):
        assert any(stream in w and future in w for w in warnings), (stream, warnings)
    assert len(result.records(PE)) == len(sandbox.data.pe_conversations)
    bookmarks = result.final_state["bookmarks"]
    newest = max(utc_timestamp(c["updated_date"]) for c in sandbox.data.pe_conversations)
    assert bookmarks[PE]["replication_key_value"] == newest
    assert bookmarks[PE_DETAILS]["replication_key_value"] == newest


def test_a_child_bookmark_never_moves_backwards(sandbox: Sandbox) -> None:
    config = {"respondent": sandbox.tap_config()["respondent"]}
    first = sync(config)
    later = "2026-11-01T00:00:00.000000+00:00"  # after every message, not in the future
    messages = [
        m["updatedAt"] for c in sandbox.data.respondent_conversations for m in c["messages"]
    ]
    assert max(utc_timestamp(m) for m in messages) < later
    # As if resumed from an earlier point: every conversation, and its messages, goes again.
    state = json.loads(json.dumps(first.final_state))
    state["bookmarks"][MESSAGES]["replication_key_value"] = later
    del state["bookmarks"][RESPONDENT]
    result = sync(config, state=state)
    assert result.records(MESSAGES)
    assert result.final_state["bookmarks"][MESSAGES]["replication_key_value"] == later
    assert all(
        s["bookmarks"][MESSAGES]["replication_key_value"] == later
        for s in result.states
        if MESSAGES in s.get("bookmarks", {})
    )


def test_a_detail_that_failed_once_is_read_again_by_the_next_run(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    (gone,) = sandbox.vanish_details("perform_engage", 1)
    with caplog.at_level(logging.WARNING):
        first = sync(config)
    assert any(gone.replace(":", "%3A") in r.getMessage() or gone in r.getMessage()
               for r in caplog.records), "the failed detail was not reported"  # fmt: skip
    assert gone not in first.keys(PE_DETAILS, "api_id")
    sandbox.restore_details("perform_engage")

    second = sync(config, state=first.final_state)
    assert second.keys(PE_DETAILS, "api_id") == [gone]
    assert second.keys(PE, "api_id") == [gone]  # the parent goes again, with its detail
    third = sync(config, state=second.final_state)
    assert third.records(PE) == []
    assert third.records(PE_DETAILS) == []


def test_state_stays_small_and_free_of_per_record_entries(
    sandbox_factory: t.Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(pe_conversations=400, pe_plans=2, pe_max_limit=50)
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    first = sync(config)
    sandbox.mutate("perform_engage", changed=20, added=5)
    second = sync(config, state=first.final_state)
    # The versions sent at or after the bookmark are the only list: the one at the bookmark and
    # the 25 just changed (newer than the run's start minus the clock margin), not one entry
    # per conversation.
    sent = second.final_state["bookmarks"][PE].get("sent_since_bookmark", {})
    assert 25 <= len(sent) <= 26
    assert max(len(json.dumps(s)) for s in second.states) < 4_000


def test_progress_markers_left_by_an_unfinished_run_never_move_the_bookmark(
    sandbox: Sandbox,
) -> None:
    """A state written by an earlier version of the tap when its run died (SDK progress markers:
    the newest value that run had seen, not what was delivered)."""
    config = {"perform_engage": sandbox.tap_config()["perform_engage"]}
    newest = max(utc_timestamp(c["updated_date"]) for c in sandbox.data.pe_conversations)
    unfinished = "2026-11-01T00:00:00.000000+00:00"  # later than every record
    state = {
        "bookmarks": {
            PE: {
                "replication_key": "updated_date",
                "progress_markers": {
                    "Note": "Progress is not resumable if interrupted.",
                    "replication_key": "updated_date",
                    "replication_key_value": unfinished,
                },
            }
        }
    }
    result = sync(config, state=state)
    assert len(result.records(PE)) == len(sandbox.data.pe_conversations)
    final = result.final_state["bookmarks"][PE]
    assert final["replication_key_value"] == newest
    assert "progress_markers" not in final
