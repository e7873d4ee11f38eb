"""Child streams whose rows are the elements of an array in their parent's record.

A conversation's answered elements, a plan's assigned users, a Respondent conversation's
messages and participants arrive embedded in the parent record. Loaded as they are, they become
a `jsonb[]` column or a Python repr in a CSV cell. A `DerivedStream` turns each element into a
row of its own, with its parent's key so it joins back, and costs no request.

Replication follows the parent: the SDK syncs a child for each parent record the parent emits,
and an incremental parent only emits the records that are new or changed, so a re-run sends the
elements of changed parents only (all of them: targets upsert on the key). Each row carries the
parent's replication value too (e.g. `conversation_updated_date`), which is the child's own
replication key and tells which version of the parent a row belongs to.

The parent hands its record over in `ApiStream.generate_child_contexts`, before catalog
deselection, so deselecting the array in the parent (or the parent itself) never changes the
child.
"""

from __future__ import annotations

import functools
import typing as t

from typing_extensions import override

from tap_conversations.client import ApiStream

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

Row = dict[str, t.Any]


def copy_json(value: t.Any) -> t.Any:
    """A deep copy of checked JSON data (lists and dicts of the schema's few levels).

    A child row must not share nested objects with its parent record: deselecting a nested
    field of the child would otherwise remove it from the parent written after it.
    """
    if type(value) is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if type(value) is list:
        return [copy_json(item) for item in value]
    return value


class DerivedStream(ApiStream):
    """One row per element of `array_field` in each parent record; no request of its own."""

    #: The parent record's array this stream unrolls, e.g. "data".
    array_field: t.ClassVar[str]
    #: Parent field -> the row field that holds it. The first is the parent's key (the join),
    #: the optional second its replication value.
    parent_fields: t.ClassVar[dict[str, str]]
    #: Field numbering each element by its place in the array (0-based), when the key needs it.
    position_field: t.ClassVar[str | None] = None

    # One stream-level bookmark instead of a state partition per parent record, and no
    # filtering of its own: the parent only hands over records that are new or changed.
    state_partitioning_keys: t.ClassVar[list[str]] = []

    @functools.cached_property
    def parent(self) -> ApiStream:
        """The parent stream's instance in this tap."""
        parent_type = self.parent_stream_type
        assert parent_type is not None  # every derived stream declares its parent
        streams = self.conversations_tap.streams.values()
        return t.cast("ApiStream", next(s for s in streams if isinstance(s, parent_type)))

    @override
    def request_records(self, context: Context | None) -> t.Iterable[Row]:
        """The elements of the parent record being synced: rows without a request."""
        parent = self.parent.record_for_children
        parent_key = next(iter(self.parent_fields))
        if parent is None or context is None or parent.get(parent_key) not in context.values():
            msg = f"{self.name}: synced without its parent record {parent_key}"  # a bug
            raise RuntimeError(msg)
        inherited = {column: parent.get(field) for field, column in self.parent_fields.items()}
        for position, element in enumerate(parent.get(self.array_field) or ()):
            row: Row = copy_json(element)
            row.update(inherited)
            if self.position_field:
                row[self.position_field] = position
            yield row

    @override
    def get_new_paginator(self) -> None:
        return None
