"""`CompatStream`: the stream-level overrides of private SDK methods, each with its reason."""

from __future__ import annotations

import logging
import typing as t

from singer_sdk import RESTStream
from singer_sdk.mapper import SameRecordTransform
from typing_extensions import override

from tap_conversations.sdk_compat.chatter import (
    CHILD_SDK_CHATTER,
    SDK_CHATTER,
    SDK_UNHANDLED_ERROR,
    DemoteSdkChatter,
)

#: Where the SDK keeps an unsorted stream's progress in a state entry (the private constant
#: `singer_sdk.helpers._state.PROGRESS_MARKERS`, guarded by tests/test_sdk_compat.py).
PROGRESS_MARKERS = "progress_markers"


if t.TYPE_CHECKING:
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_conversations.sdk_compat.tap import CompatTap


class CompatStream(RESTStream[t.Any]):
    """The stream-level overrides of private SDK methods, and the record boundary where a run
    asked to stop stops (`post_process`)."""

    def __init__(self, tap: Tap, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(tap, *args, **kwargs)
        self.compat_tap = t.cast("CompatTap", tap)
        #: The `schema_version` the last SCHEMA message of this run described (None: none yet).
        self._schema_sent: int | None = None
        self._starting_value_written = False
        if not self.logger.filters:  # children: all their chatter; others: a first run's
            child = self.parent_stream_type is not None
            self.logger.addFilter(DemoteSdkChatter(CHILD_SDK_CHATTER if child else frozenset()))

    @property
    def schema_version(self) -> int:
        """How many times the stream's schema grew since it was written (subclasses know)."""
        return 0

    def grown_schema(self, schema: dict[str, t.Any]) -> dict[str, t.Any]:
        """`schema` (a stream map's) with what the stream's schema grew by (subclasses)."""
        return schema

    @property
    def one_state_per_stream(self) -> bool:
        """A child whose state is one stream-level bookmark (`state_partitioning_keys = []`)."""
        return self.parent_stream_type is not None and self.state_partitioning_keys == []

    @override
    def log(self, message: str, *args: t.Any, level: int = logging.INFO, **kwargs: t.Any) -> None:
        # Public, but what it is called with is the SDK's: `Stream.sync` logs "Beginning
        # sync" once per child sync (per parent record) and `SDK_UNHANDLED_ERROR` before any
        # error. Lowering the level here, before `Logger.log`, means no record is even built
        # when DEBUG is off. Guarded by tests/test_sdk_compat_logging.py.
        if (
            level == logging.INFO
            and (self.parent_stream_type is not None or message in SDK_CHATTER)
        ) or (level == logging.ERROR and message == SDK_UNHANDLED_ERROR):
            level = logging.DEBUG
        super().log(message, *args, level=level, **kwargs)

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        """A record boundary: every record before this one is written and its bookmark moved,
        so a run asked to stop stops here (`CompatTap.raise_if_stopping`); and the record,
        already checked, is about to be written, so a schema it grew is written first
        (`schema_evolution: evolve`). An override calls `super().post_process` first."""
        self.compat_tap.raise_if_stopping()
        if self._schema_sent is not None and self._schema_sent != self.schema_version:
            self._write_schema_message()
        return row

    @override
    def _write_starting_replication_value(self, context: Context | None) -> None:
        # Why: the SDK writes the starting bookmark into state and logs "Starting incremental
        # sync" on every child sync, i.e. once per parent record. A child with one
        # stream-level state (`one_state_per_stream`) has the same starting value for every
        # parent of a run: once per run is enough. No public hook sits there.
        if self.one_state_per_stream:
            if self._starting_value_written:
                return
            self._starting_value_written = True
        super()._write_starting_replication_value(context)

    @override
    def _write_schema_message(self) -> None:
        # Why: the SDK writes a child stream's SCHEMA once per parent record (each parent
        # starts a child sync). One per stream and run is all a target needs; the rest is noise
        # that grows with the account (meltano/sdk#1061). No public hook decides this.
        # Again only when the schema grew (`schema_evolution: evolve`; `post_process`, before
        # a RECORD): then an identity map's schema (its public `transformed_schema`, what the
        # SDK's message carries) becomes the grown one; a map that transforms or flattens keeps
        # the schema it made.
        version = self.schema_version
        if self._schema_sent == version:
            return
        if version:
            for stream_map in self.stream_maps:
                if type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled:
                    stream_map.transformed_schema = self.grown_schema(stream_map.transformed_schema)
        super()._write_schema_message()
        self._schema_sent = version

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, t.Any], *, context: t.Any = None
    ) -> None:
        # Why: the SDK's bookmark logic assumes either a sorted stream (the bookmark is the
        # last value seen) or an unsorted one (the maximum, promoted only when the stream
        # ends, and then even backwards). Here list streams advance their own bookmark as the
        # snapshot is delivered (`replication`), and child bookmarks never move backwards. The
        # SDK calls this after each record is written; no public hook replaces it.
        self.advance_bookmark(latest_record, context)

    def advance_bookmark(self, record: dict[str, t.Any], context: t.Any) -> None:
        """Move the bookmark after `record` was written (default: the SDK's way)."""
        super()._increment_stream_state(record, context=context)

    def checkpoint(self) -> None:
        """Write a STATE message now, with the state as it stands.

        Why private: `_write_state_message` is the SDK's only way to emit STATE from a stream;
        it writes only when the state changed since the last one (`is_flushed`), and a
        bookmark moved by this tap is a change the SDK does not see.
        """
        self.state_manager.is_flushed = False
        self._write_state_message()

    @staticmethod
    def drop_progress_markers(state: dict[str, t.Any]) -> bool:
        """Remove the SDK's progress markers from one state entry; whether there were any.

        Why private: the SDK keeps an unsorted stream's progress under this key and promotes it
        to the bookmark when the stream ends. This tap never writes them (its bookmarks move as
        records are delivered), but a state left by a run of an earlier version may hold some:
        promoted at the end of a run, they would overwrite the bookmark with a value from a run
        that never finished. The key's name is `singer_sdk.helpers._state.PROGRESS_MARKERS`.
        """
        return state.pop(PROGRESS_MARKERS, None) is not None

    def reset_schema_sent(self) -> None:
        """A new run writes each SCHEMA again (once), and each starting bookmark."""
        self._schema_sent = None
        self._starting_value_written = False
