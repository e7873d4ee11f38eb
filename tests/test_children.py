"""Child streams derived from parent records: one row per element, keyed, joinable, no request."""

from __future__ import annotations

import typing as t
from collections import Counter

import pytest

from tap_conversations.tap import TapConversations
from tests.children import DERIVED, PAIRS, Derived, assert_rows_match, catalog
from tests.helpers import as_instant, sync

if t.TYPE_CHECKING:
    from sandbox import Sandbox


def provider_config(sandbox: Sandbox, provider: str) -> dict[str, t.Any]:
    return {provider: sandbox.tap_config()[provider]}


@pytest.mark.parametrize("derived", DERIVED, ids=lambda d: d.stream)
def test_every_element_is_one_row_with_its_parent_key(sandbox: Sandbox, derived: Derived) -> None:
    parents = derived.parents(sandbox)
    kinds = Counter(
        "null" if p[derived.array] is None else len(p[derived.array]) > 0 for p in parents
    )
    result = sync(provider_config(sandbox, derived.provider))
    rows = result.records(derived.stream)

    expected = derived.expected(sandbox)
    assert expected, "the sandbox has no elements: the test proves nothing"
    assert_rows_match(rows, expected, derived.key)
    assert len(rows) == sum(len(p[derived.array] or []) for p in parents)
    # Parents with an empty array or `null` give no row (and no failure).
    empty = {p[derived.parent_key] for p in parents if not p[derived.array]}
    assert not {row[derived.join] for row in rows} & empty
    if derived.stream != "respondent_participants":  # a conversation always has its owner
        assert kinds[False] + kinds["null"] > 0, f"no parent with an empty array: {kinds}"


def test_the_sandbox_has_parents_with_empty_and_null_arrays(sandbox: Sandbox) -> None:
    arrays = [p[d.array] for d in DERIVED for p in d.parents(sandbox)]
    assert any(a is None for a in arrays)
    assert any(a == [] for a in arrays)


@pytest.mark.parametrize("derived", DERIVED, ids=lambda d: d.stream)
def test_every_row_joins_to_a_parent_of_the_same_run(sandbox: Sandbox, derived: Derived) -> None:
    result = sync(provider_config(sandbox, derived.provider))
    parent_keys = set(result.keys(derived.parent, derived.parent_key))
    joins = {row[derived.join] for row in result.records(derived.stream)}
    assert joins, derived.stream
    assert joins <= parent_keys


@pytest.mark.parametrize("provider", ["perform_engage", "respondent"])
def test_derived_streams_cost_no_request(sandbox: Sandbox, provider: str) -> None:
    config = provider_config(sandbox, provider)
    derived = {d.stream for d in DERIVED if d.provider == provider}
    others = set(TapConversations(config=config).streams) - derived
    sync(config, catalog=catalog(config, selected=others))
    requests_without = len(sandbox.requests)
    sandbox.reset_log()
    result = sync(config)
    assert all(result.records(stream) for stream in derived)
    assert len(sandbox.requests) == requests_without


def test_incremental_run_sends_the_elements_of_changed_parents_only(sandbox: Sandbox) -> None:
    config = provider_config(sandbox, "perform_engage")
    first = sync(config)
    mutation = sandbox.mutate("perform_engage", changed=6, added=3)
    second = sync(config, state=first.final_state)

    resent = set(second.keys("perform_engage_conversation_details", "api_id"))
    assert set(mutation.changed_keys + mutation.added_keys) <= resent
    assert len(resent) < len(sandbox.data.pe_conversations) / 2
    details = sandbox.data.pe_conversation_details
    expected = [
        {**element, "conversation_api_id": api_id, "position": index}
        for api_id in resent
        for index, element in enumerate(details[api_id]["data"] or [])
    ]
    assert expected, "no changed conversation has elements: the test proves nothing"
    rows = second.records("perform_engage_conversation_elements")
    assert_rows_match(rows, expected, ("conversation_api_id", "position"))
    bookmarks = second.final_state["bookmarks"]["perform_engage_conversation_elements"]
    assert "partitions" not in bookmarks


def test_incremental_run_sends_the_participants_of_changed_conversations_only(
    sandbox: Sandbox,
) -> None:
    config = provider_config(sandbox, "respondent")
    first = sync(config)
    mutation = sandbox.mutate("respondent", changed=3, added=2)
    second = sync(config, state=first.final_state)

    resent = set(second.keys("respondent_conversations", "uid"))
    assert set(mutation.changed_keys + mutation.added_keys) <= resent
    assert len(resent) <= 6  # the five, and one more at the bookmark at most
    rows = second.records("respondent_participants")
    assert {row["conversation_uid"] for row in rows} == resent
    current = {c["uid"]: c for c in sandbox.data.respondent_conversations}
    for row in rows:
        conversation = current[row["conversation_uid"]]
        assert as_instant(row["conversation_updated_at"]) == as_instant(conversation["updatedAt"])


def test_plan_children_are_full_table_like_their_parent(sandbox: Sandbox) -> None:
    config = provider_config(sandbox, "perform_engage")
    first = sync(config)
    second = sync(config, state=first.final_state)
    for stream in (
        "perform_engage_conversation_plan_users",
        "perform_engage_conversation_plan_departments",
    ):
        assert second.records(stream), stream
        assert len(second.records(stream)) == len(first.records(stream))


@pytest.mark.parametrize(
    ("parent", "field", "children"),
    [
        ("respondent_conversations", "messages", ["respondent_messages"]),
        ("respondent_conversations", "participants", ["respondent_participants"]),
        ("perform_engage_conversation_details", "data", ["perform_engage_conversation_elements"]),
        (
            "perform_engage_conversation_plan_details",
            "assigned_users",
            ["perform_engage_conversation_plan_users"],
        ),
    ],
)
def test_deselecting_the_parents_array_leaves_the_child_whole(
    sandbox: Sandbox, parent: str, field: str, children: list[str]
) -> None:
    derived = {d.stream: d for d in DERIVED}
    config = provider_config(sandbox, derived[children[0]].provider)
    result = sync(config, catalog=catalog(config, deselected_fields={parent: {field}}))
    parents = result.records(parent)
    assert parents
    assert all(field not in record for record in parents), "the catalog was not applied"
    for child in children:
        assert_rows_match(
            result.records(child), derived[child].expected(sandbox), derived[child].key
        )


@pytest.mark.parametrize("child", list(PAIRS))
def test_a_child_selected_without_its_parent_gets_every_record(
    sandbox: Sandbox, child: str
) -> None:
    provider = "respondent" if child.startswith("respondent") else "perform_engage"
    config = provider_config(sandbox, provider)
    alone = sync(config, catalog=catalog(config, selected={child}))
    everything = sync(config)

    assert set(alone.counts()) == {child}, "a stream that is not selected was emitted"
    assert alone.records(child), child
    assert sorted(map(repr, alone.records(child))) == sorted(map(repr, everything.records(child)))
    assert child in alone.final_state["bookmarks"]
