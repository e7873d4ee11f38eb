"""`CompatStream`: the stream-level overrides of private SDK methods, each with its reason."""

from __future__ import annotations

import datetime
import logging
import typing as t
from dataclasses import dataclass

from singer_sdk import RESTStream, Stream
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._state import PROGRESS_MARKERS
from singer_sdk.mapper import RemoveRecordTransform, SameRecordTransform
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_conversations.sdk_compat.chatter import (
    CHILD_SDK_CHATTER,
    SDK_CHATTER,
    SDK_UNHANDLED_ERROR,
    DemoteSdkChatter,
)

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context


@dataclass(frozen=True)
class RecordPlan:
    """What writing a record of a stream involves, the same for every record of a run."""

    nested: bool  # a nested property is deselected: the SDK's mask walk is needed
    deselected: tuple[str, ...]  # top-level properties to drop
    plain_alias: str | None  # the stream's one map is the SDK's identity map: its alias

    @property
    def as_read(self) -> bool:
        """Whether a record is written exactly as read: identity map, nothing deselected."""
        return self.plain_alias is not None and not self.nested and not self.deselected


@t.runtime_checkable
class EncodedRecordWriter(t.Protocol):
    """A message writer that writes RECORD messages around records' JSON as it is, a batch
    with one call (`output.StateFlushingWriter`, `airbyte.writer.AirbyteMessageWriter`)."""

    def write_encoded_records(
        self,
        stream: str,
        records_json: t.Sequence[bytes | memoryview],
        version: int | None,
        time_extracted: datetime.datetime,
    ) -> None: ...


class CompatStream(RESTStream[t.Any]):
    """The stream-level overrides of private SDK methods."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        #: The `schema_version` the last SCHEMA message of this run described (None: none yet).
        self._schema_sent: int | None = None
        self._starting_value_written = False
        self._record_plan: RecordPlan | None = None
        if self.parent_stream_type is not None and not self.logger.filters:
            self.logger.addFilter(DemoteSdkChatter(CHILD_SDK_CHATTER))

    @property
    def nested_deselection(self) -> bool:
        """Whether the catalog deselected any nested property (subclasses know)."""
        return True

    @property
    def deselected_fields(self) -> frozenset[str]:
        """Top-level properties the catalog deselected (subclasses know)."""
        return frozenset()

    @property
    def schema_version(self) -> int:
        """How many times the stream's schema grew since it was written (subclasses know)."""
        return 0

    def grown_schema(self, schema: dict[str, t.Any]) -> dict[str, t.Any]:
        """`schema` (a stream map's) with what the stream's schema grew by (subclasses)."""
        return schema

    def write_schema_if_grown(self) -> None:
        """Write the stream's SCHEMA again if it grew since the last one: before a RECORD."""
        if self._schema_sent is not None and self._schema_sent != self.schema_version:
            self._write_schema_message()

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
    def _process_record(
        self,
        record: dict[str, t.Any],
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        # Why: per record, the SDK adds the partition's keys to the record, then builds a
        # child context (a generator, a copy, a stream-map filter call) even for a stream
        # without children: 8% of the CPU of a 50,000-record onQ sync under cProfile. A
        # stream without children only needs the first part. No public hook sits there.
        if self.child_streams:
            super()._process_record(record, child_context, partition_context)
            return
        for key, value in (partition_context or {}).items():
            if key not in record:
                record[key] = value

    def encoded_batches(
        self, context: Context | None
    ) -> t.Iterator[t.Sequence[bytes | memoryview]] | None:
        """This sync's records as the JSON of each, in batches, to be written as they are;
        `None` (the default): the stream's records go through `get_records` and the SDK's
        record loop.

        Only asked when nothing between a record and its RECORD message would look at it (see
        `_sync_records`). Like `get_records`, the iterator runs on as each batch is written.
        """
        return None

    @override
    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict[str, t.Any], t.Any, t.Any]:
        # Why: a list stream reads its whole list into a snapshot first, encoded; the SDK's
        # record loop then needs each record decoded back into a dict, wrapped in a
        # `RecordMessage`, passed through the stream map, child-context and state hooks, and
        # encoded again. For a stream with no children, no partitions, the identity map and
        # nothing deselected, none of those steps changes anything, and they were about
        # half of the tap's CPU on 50,000 onQ records (bench scenario C). Then the records
        # are written as the snapshot holds them, and this loop does what the SDK's does
        # for such a stream (0.54.9: record limit, RECORD, is_flushed, STATE every
        # STATE_MSG_FREQUENCY records, record count and timer metrics, starting value,
        # finalized state, last STATE), a batch at a time. No public hook sits there;
        # `Stream.sync` calls this.
        # Guarded by tests/test_sdk_compat_encoded.py. It yields no records: `sync` only
        # drains it (`write_messages=False`, for batches, always takes the SDK's loop).
        writer = self._tap.message_writer
        plan = self._record_plan or self._plan_records()
        as_read = (  # cheapest first: a child's sync (one per parent record) stops at `context`
            context is None
            and write_messages
            and not self.child_streams
            and not self.partitions
            and self.selected
            and plan.as_read
            and type(self).post_process is Stream.post_process
        )
        encoded_writer = writer if as_read and isinstance(writer, EncodedRecordWriter) else None
        batches = self.encoded_batches(context) if encoded_writer is not None else None
        if encoded_writer is None or batches is None:
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        alias = t.cast("str", plan.plain_alias)
        record_counter, timer = self.get_record_counter(), self.get_sync_timer()
        with record_counter, timer:
            record_counter.with_context({})
            timer.with_context({})
            self._write_starting_replication_value(None)
            state_manager, now, utc = self.state_manager, datetime.datetime.now, datetime.UTC
            version, written = self._stream_version, 0
            limit = self.ABORT_AT_RECORD_COUNT  # `--test`: the SDK's check, below
            write, state_every = encoded_writer.write_encoded_records, self.STATE_MSG_FREQUENCY
            try:
                for batch in batches:
                    allowed = batch
                    if limit is not None:  # `--test`: the SDK stops at the first record past it
                        self._check_max_record_limit(current_record_index=written)
                        allowed = batch[: limit - written]
                    self.write_schema_if_grown()
                    write(alias, allowed, version, now(utc))
                    state_manager.is_flushed = False
                    written += len(allowed)
                    record_counter.increment(len(allowed))
                    if written % state_every < len(allowed):  # a multiple of it was passed
                        self._write_state_message()
                    if len(allowed) < len(batch):
                        self._check_max_record_limit(current_record_index=written)
            finally:  # stopped early: the batches end now (their delivery with them)
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
            if self._get_state_partition_context(None) is None:
                self._finalize_state(self.get_context_state(None))
        self._finalize_state(self.stream_state)
        self._write_state_message()

    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> t.Generator[RecordMessage, None, None]:
        # Why: the SDK's version walks the selection mask for every property of every record
        # and conforms types. Measured on 50,000 onQ records (bench scenario C), the walk was a
        # quarter of the tap's CPU; `records.RecordChecker` already checked types. No public
        # hook sits between a record and its message. Here the walk runs only when a nested
        # property is deselected; deselected top-level fields are popped by name.
        # Deselection happens here, when the record is written, and not when it is read: the
        # SDK syncs a record's children before writing it, so child streams get the parent's
        # full record whatever the catalog deselected in the parent (or when the parent is not
        # selected at all and never written).
        # Private: `_generate_record_messages`, `_stream_version`, and
        # `singer_sdk.helpers._catalog.pop_deselected_record_properties`.
        if self._schema_sent != self.schema_version:
            self.write_schema_if_grown()
        plan = self._record_plan or self._plan_records()
        if plan.nested:
            pop_deselected_record_properties(record, self.schema, self.mask)
        else:
            for name in plan.deselected:
                record.pop(name, None)
        now = datetime.datetime.now(datetime.UTC)
        if plan.plain_alias is not None:  # the one map is the SDK's identity map
            yield RecordMessage(
                stream=plan.plain_alias,
                record=record,
                version=self._stream_version,
                time_extracted=now,
            )
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=now,
                )

    def _plan_records(self) -> RecordPlan:
        """What writing a record involves in this run, worked out once (see `RecordPlan`)."""
        maps = self.stream_maps
        plain = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and not maps[0].flattening_enabled
        )
        self._record_plan = RecordPlan(
            nested=self.nested_deselection,
            deselected=tuple(self.deselected_fields),
            plain_alias=maps[0].stream_alias if plain else None,
        )
        return self._record_plan

    @override
    def _write_schema_message(self) -> None:
        # Why: the SDK writes a child stream's SCHEMA once per parent record (each parent
        # starts a child sync). One per stream and run is all a target needs; the rest is noise
        # that grows with the account (meltano/sdk#1061). No public hook decides this.
        # Again only when the schema grew (`schema_evolution: evolve`, `write_schema_if_grown`
        # before a RECORD): then an identity map's schema is the grown one; a map that
        # transforms or flattens keeps the schema it made. Private: `_generate_schema_messages`.
        version = self.schema_version
        if self._schema_sent == version:
            return
        if version == 0:
            super()._write_schema_message()
        else:
            maps = [m for m in self.stream_maps if not isinstance(m, RemoveRecordTransform)]
            for stream_map, message in zip(maps, self._generate_schema_messages(), strict=True):
                if type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled:
                    message.schema = self.grown_schema(message.schema)
                self._tap.write_message(message)
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

    def send_prepared(self, request: requests.PreparedRequest, context: t.Any) -> requests.Response:
        """Send one prepared request the way the SDK's paging does, retries and all.

        Why private: the SDK sends a page only inside `request_records`, one after another;
        `_request` (auth, send, metrics, `validate_response`) is what it wraps with
        `request_decorator`. Sending the next list pages ahead, on worker threads
        (`prefetch.DetailPrefetcher.pages_ahead`), needs that same path.
        """
        response: requests.Response = self.request_decorator(self._request)(request, context)
        return response

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
        """A new run writes each SCHEMA again (once), and each starting bookmark, and works out
        its record plan again (its catalog may differ)."""
        self._schema_sent = None
        self._starting_value_written = False
        self._record_plan = None
