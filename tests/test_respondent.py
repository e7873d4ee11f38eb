"""Respondent against the sandbox: header auth, counted paging, projects, derived messages."""

from __future__ import annotations

import typing as t

from tests.helpers import assert_same_records, run_cli, sync

if t.TYPE_CHECKING:
    from pathlib import Path

    from sandbox import Sandbox

CONVERSATIONS = "respondent_conversations"
MESSAGES = "respondent_messages"


def only_respondent(sandbox: Sandbox, **overrides: t.Any) -> dict[str, t.Any]:
    return {"respondent": {**sandbox.tap_config()["respondent"], **overrides}}


def expected_messages(conversations: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [
        {**message, "conversation_uid": conversation["uid"]}
        for conversation in conversations
        for message in conversation["messages"]
    ]


def test_every_conversation_and_message_once(sandbox: Sandbox) -> None:
    result = sync(only_respondent(sandbox, page_size=10))
    conversations = sandbox.data.respondent_conversations

    assert_same_records(result.records(CONVERSATIONS), conversations, "uid")
    assert_same_records(result.records(MESSAGES), expected_messages(conversations), "uid")
    assert expected_messages(conversations), "sandbox has no messages: the test proves nothing"

    pages = [r for r in sandbox.requests if r.provider == "respondent"]
    # 25 conversations at 10 a page with totalResults: 3 requests, none after the total.
    assert len(pages) == 3
    assert all(r.query.get("includeCount") == "true" for r in pages)


def test_messages_are_attached_to_their_conversation(sandbox: Sandbox) -> None:
    result = sync(only_respondent(sandbox))
    owner = {
        m["uid"]: c["uid"] for c in sandbox.data.respondent_conversations for m in c["messages"]
    }
    for message in result.records(MESSAGES):
        assert message["conversation_uid"] == owner[message["uid"]]
        assert set(message["sender"]) >= {"uid", "firstName", "lastName"}
    # No request is made for messages: every request was a conversations page.
    assert all(r.path.endswith("/messaging/conversations") for r in sandbox.requests)


def test_each_project_is_a_partition_with_its_own_state(sandbox: Sandbox) -> None:
    projects = sandbox.data.respondent_project_ids[:2]
    result = sync(only_respondent(sandbox, project_ids=projects))

    expected = [
        c for c in sandbox.data.respondent_conversations if c["metadata"]["projectId"] in projects
    ]
    assert_same_records(result.records(CONVERSATIONS), expected, "uid")
    assert {r.query.get("projectId") for r in sandbox.requests} == set(projects)

    partitions = result.final_state["bookmarks"][CONVERSATIONS]["partitions"]
    assert sorted(p["context"]["project_id"] for p in partitions) == sorted(projects)
    for partition in partitions:
        newest = max(
            c["updatedAt"]
            for c in expected
            if c["metadata"]["projectId"] == partition["context"]["project_id"]
        )
        assert partition["replication_key_value"][:19] == newest[:19]
    # The messages child keeps one small stream-level bookmark, not one entry per conversation.
    assert "partitions" not in result.final_state["bookmarks"].get(MESSAGES, {})


def test_external_researcher_filter(sandbox: Sandbox) -> None:
    researcher = sandbox.data.respondent_conversations[0]["metadata"]["externalResearcherId"]
    result = sync(only_respondent(sandbox, external_researcher_id=researcher))
    expected = [
        c
        for c in sandbox.data.respondent_conversations
        if c["metadata"]["externalResearcherId"] == researcher
    ]
    assert_same_records(result.records(CONVERSATIONS), expected, "uid")


def test_wrong_secret_fails_clearly(sandbox: Sandbox, tmp_path: Path) -> None:
    completed = run_cli([], only_respondent(sandbox, api_secret="nope-3f9a"), tmp_path)
    assert completed.returncode != 0
    assert "check respondent credentials" in completed.stderr
    assert "nope-3f9a" not in completed.stderr + completed.stdout
