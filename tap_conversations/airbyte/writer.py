"""The tap's message writer for Airbyte: Singer messages become Airbyte messages in-process.

The SDK hands every message it would print to `Tap.message_writer`; this writer, given to the
tap through its public `message_writer` argument, prints Airbyte messages instead:

- RECORD -> RECORD (`emitted_at` = the record's extraction time in ms);
- STATE -> one per-stream STATE for each configured stream whose bookmark changed, with the
  number of records sent for it since its previous STATE;
- SCHEMA -> stream status: the SDK syncs one family (a top-level stream and its children) at
  a time, so the first SCHEMA of a family starts its selected streams and completes the family
  before it. `finish` completes (or, after a failure, marks INCOMPLETE) whatever is left.
"""

from __future__ import annotations

import datetime
import time
import typing as t

from singer_sdk.io_base import GenericSingerWriter
from singer_sdk.singerlib import ActivateVersionMessage, RecordMessage, SchemaMessage, StateMessage
from typing_extensions import override

from tap_conversations.airbyte.catalog import family_roots, stream_parents, stream_state_changes
from tap_conversations.airbyte.protocol import (
    MessageOutput,
    models,
    record_message,
    record_payload,
    serialize,
    stream_state_message,
    stream_status_message,
)

if t.TYPE_CHECKING:
    from singer_sdk import Tap


def _emitted_at(extracted: datetime.datetime | None) -> int:
    """Airbyte's `emitted_at`: the extraction time (now if unknown), in milliseconds."""
    seconds = extracted.timestamp() if extracted is not None else time.time()
    return int(seconds * 1000)


def _airbyte_record(message: RecordMessage) -> t.Any:
    return record_message(message.stream, message.record, _emitted_at(message.time_extracted))


class StreamStatuses:
    """STARTED, RUNNING, COMPLETE / INCOMPLETE for each configured stream, in protocol order."""

    def __init__(self, output: MessageOutput) -> None:
        self.output = output
        self.order: list[str] = []  # configured streams, in the order the tap syncs them
        self.family: dict[str, str] = {}  # stream -> its top-level ancestor
        self.current_family: str | None = None
        self.started: set[str] = set()
        self.running: set[str] = set()
        self.done: set[str] = set()

    def track(self, tap: Tap, configured: t.Collection[str]) -> None:
        self.family = family_roots(stream_parents(tap))
        self.order = [name for name in tap.streams if name in configured]

    def _emit(self, stream: str, status: t.Any) -> None:
        self.output.write(stream_status_message(stream, status))

    def schema_seen(self, stream: str) -> None:
        family = self.family.get(stream, stream)
        if family == self.current_family:
            return
        if self.current_family is not None:
            self._end_family(self.current_family)
        self.current_family = family
        for name in self.order:
            if self.family.get(name) == family and name not in self.started:
                self.started.add(name)
                self._emit(name, models.AirbyteStreamStatus.STARTED)

    def record_seen(self, stream: str) -> None:
        if stream in self.running or stream not in self.order:
            return
        if stream not in self.started:
            self.started.add(stream)
            self._emit(stream, models.AirbyteStreamStatus.STARTED)
        self.running.add(stream)
        self._emit(stream, models.AirbyteStreamStatus.RUNNING)

    def fail_families(self, roots: t.Collection[str]) -> None:
        """The families of these top-level streams stopped on an error: INCOMPLETE now."""
        for name in self.order:
            if self.family.get(name) in roots and name not in self.done:
                self.done.add(name)
                self._emit(name, models.AirbyteStreamStatus.INCOMPLETE)
        if self.current_family in roots:
            self.current_family = None

    def _end_family(self, family: str) -> None:
        for name in self.order:
            if self.family.get(name) == family and name in self.started and name not in self.done:
                self.done.add(name)
                self._emit(name, models.AirbyteStreamStatus.COMPLETE)

    def finish(self, *, succeeded: bool) -> None:
        for name in self.order:
            if name in self.done:
                continue
            self.done.add(name)
            if succeeded:
                if name not in self.started:
                    self._emit(name, models.AirbyteStreamStatus.STARTED)
                self._emit(name, models.AirbyteStreamStatus.COMPLETE)
            else:
                self._emit(name, models.AirbyteStreamStatus.INCOMPLETE)


class AirbyteMessageWriter(GenericSingerWriter[bytes, t.Any]):
    """Writes the Airbyte translation of each Singer message the tap emits."""

    def __init__(self, output: MessageOutput, configured: t.Collection[str]) -> None:
        super().__init__()
        self.output = output
        self.configured = frozenset(configured)
        self.statuses = StreamStatuses(output)
        self._sent_state: dict[str, t.Any] = {}
        self._records_since_state: dict[str, int] = {}

    def track(self, tap: Tap, incoming_state: t.Mapping[str, t.Any]) -> None:
        """Learn the tap's streams; the incoming state counts as already sent."""
        self.statuses.track(tap, self.configured)
        stream_state_changes(incoming_state, self._sent_state, self.configured)

    def group_failed(self, streams: t.Iterable[str]) -> None:
        """A provider's streams stopped on an error while the others run on (see `AirbyteTap`).

        What they sent stays sent: their last STATE (written by the tap right after) covers it.
        """
        self.statuses.fail_families(set(streams))

    def finish(self, *, succeeded: bool) -> None:
        """End the read: the last STATEs, then the final stream statuses.

        After a success, each stream that sent records since its last STATE gets one more (its
        bookmark did not move, so the tap sent none): a STATE after a stream's records is what
        tells Airbyte they are all delivered.
        """
        if succeeded:
            for name, count in self._records_since_state.items():
                if count and name in self._sent_state:
                    self.output.write(stream_state_message(name, self._sent_state[name], count))
            self._records_since_state.clear()
        self.statuses.finish(succeeded=succeeded)

    @override
    def write_message(self, message: t.Any) -> None:
        if type(message) is RecordMessage:  # the hot path: one call per record
            self._write_record(message.stream, message.record, message.time_extracted)
            return
        for airbyte_message in self.translate(message):
            self.output.write(airbyte_message)

    def _write_record(
        self, stream: str, data: dict[str, t.Any], time_extracted: datetime.datetime | None
    ) -> None:
        """One record: its stream is running, counted towards its next STATE, and written."""
        if stream not in self.statuses.running:
            self.statuses.record_seen(stream)
        self._records_since_state[stream] = self._records_since_state.get(stream, 0) + 1
        payload = record_payload(stream, data, _emitted_at(time_extracted))
        self.output.write_builtins(payload, flush=False)

    @override
    def serialize_message(self, message: t.Any) -> bytes:
        """The Airbyte lines for one Singer message (this also advances the stream statuses)."""
        if type(message) is RecordMessage:
            return serialize(_airbyte_record(message))
        return b"".join(serialize(m) for m in self.translate(message))

    def translate(self, message: t.Any) -> list[t.Any]:
        """Airbyte messages for a non-RECORD Singer message (statuses are written directly)."""
        if isinstance(message, SchemaMessage):
            self.statuses.schema_seen(message.stream)
            return []
        if isinstance(message, StateMessage):
            changes = stream_state_changes(message.value, self._sent_state, self.configured)
            return [
                stream_state_message(name, bookmark, self._records_since_state.pop(name, 0))
                for name, bookmark in changes
            ]
        if isinstance(message, ActivateVersionMessage):
            return []  # Airbyte has no equivalent; full refresh is the destination's business
        msg = f"{type(message).__name__} messages cannot be sent over the Airbyte protocol"
        raise TypeError(msg)
