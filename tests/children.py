"""What the derived child streams should hold, worked out from the sandbox's own data."""

from __future__ import annotations

import typing as t
from collections import Counter
from dataclasses import dataclass

from tap_conversations.tap import TapConversations
from tests.helpers import as_instant

if t.TYPE_CHECKING:
    from sandbox import Sandbox


@dataclass(frozen=True)
class Derived:
    """A child stream made of the elements of one array in its parent's records."""

    stream: str
    parent: str  # the stream whose records hold the array
    array: str
    parent_key: str  # the parent's key field
    join: str  # the child's field holding the parent's key
    key: tuple[str, ...]
    provider: str
    position: bool = False  # whether the rows carry their place in the array
    version: tuple[str, str] | None = None  # (parent's replication field, child's copy of it)

    def parents(self, sandbox: Sandbox) -> list[dict[str, t.Any]]:
        data = sandbox.data
        return {
            "perform_engage_conversation_details": lambda: list(
                data.pe_conversation_details.values()
            ),
            "perform_engage_conversation_plan_details": lambda: list(data.pe_plan_details.values()),
            "respondent_conversations": lambda: data.respondent_conversations,
        }[self.parent]()

    def expected(self, sandbox: Sandbox) -> list[dict[str, t.Any]]:
        """One row per element of every parent's array, with the parent's key (and place)."""
        rows = []
        for parent in self.parents(sandbox):
            for index, element in enumerate(parent[self.array] or []):
                row = {**element, self.join: parent[self.parent_key]}
                if self.position:
                    row["position"] = index
                if self.version:
                    row[self.version[1]] = parent[self.version[0]]
                rows.append(row)
        return rows


ELEMENTS = Derived(
    "perform_engage_conversation_elements",
    "perform_engage_conversation_details",
    "data",
    "api_id",
    "conversation_api_id",
    ("conversation_api_id", "position"),
    "perform_engage",
    position=True,
    version=("updated_date", "conversation_updated_date"),
)
PLAN_USERS = Derived(
    "perform_engage_conversation_plan_users",
    "perform_engage_conversation_plan_details",
    "assigned_users",
    "api_id",
    "plan_api_id",
    ("plan_api_id", "api_id"),
    "perform_engage",
)
PLAN_DEPARTMENTS = Derived(
    "perform_engage_conversation_plan_departments",
    "perform_engage_conversation_plan_details",
    "assigned_departments",
    "api_id",
    "plan_api_id",
    ("plan_api_id", "api_id"),
    "perform_engage",
)
PARTICIPANTS = Derived(
    "respondent_participants",
    "respondent_conversations",
    "participants",
    "uid",
    "conversation_uid",
    ("conversation_uid", "uid"),
    "respondent",
    version=("updatedAt", "conversation_updated_at"),
)
MESSAGES = Derived(
    "respondent_messages",
    "respondent_conversations",
    "messages",
    "uid",
    "conversation_uid",
    ("uid",),
    "respondent",
    version=("updatedAt", "conversation_updated_at"),
)
DERIVED = (ELEMENTS, PLAN_USERS, PLAN_DEPARTMENTS, PARTICIPANTS, MESSAGES)

#: child stream -> its parent stream, for every parent/child pair of the tap.
PAIRS = {
    "perform_engage_conversation_details": "perform_engage_conversations",
    "perform_engage_conversation_plan_details": "perform_engage_conversation_plans",
    **{d.stream: d.parent for d in DERIVED},
}


def assert_rows_match(
    emitted: list[dict[str, t.Any]], expected: list[dict[str, t.Any]], key: tuple[str, ...]
) -> None:
    """Every expected row emitted exactly once with its values, and nothing else."""
    counts = Counter(row_key(row, key) for row in emitted)
    assert not [k for k, n in counts.items() if n > 1], "a row was emitted twice"
    by_key = {row_key(row, key): row for row in emitted}
    want_by_key = {row_key(row, key): row for row in expected}
    assert set(by_key) == set(want_by_key)
    for k, want in want_by_key.items():
        assert as_instant({f: by_key[k].get(f) for f in want}) == as_instant(want), k


def row_key(row: dict[str, t.Any], key: tuple[str, ...]) -> tuple[t.Any, ...]:
    return tuple(row[k] for k in key)


def catalog(
    config: dict[str, t.Any],
    selected: set[str] | None = None,
    deselected_fields: dict[str, set[str]] | None = None,
) -> dict[str, t.Any]:
    """The tap's discovered catalog with only `selected` streams (all when None) selected and
    `deselected_fields` (stream -> top-level properties) deselected."""
    discovered = TapConversations(config=config).catalog_dict
    for entry in discovered["streams"]:
        name = entry["tap_stream_id"]
        for item in entry["metadata"]:
            breadcrumb = tuple(item["breadcrumb"])
            if breadcrumb == ():
                item["metadata"]["selected"] = selected is None or name in selected
            elif breadcrumb[-1] in (deselected_fields or {}).get(name, set()):
                item["metadata"]["selected"] = False
    return discovered
