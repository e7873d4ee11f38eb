"""How Singer messages reach stdout: msgspec-encoded, flushed at each non-RECORD message.

The SDK's writers flush stdout after every message, one `write` system call per RECORD
(measured: 1.7 µs per record even into /dev/null, about a tenth of the tap's per-record CPU on
a list endpoint; more into a pipe). Here RECORD messages go through Python's buffer, written
out whenever it fills (records written as the snapshot holds them, a window of them at a time:
one write), and every other message (SCHEMA, STATE, ...) flushes it, so everything a STATE
covers reaches the target before that STATE does. A run killed outright loses its
buffered records together with any STATE after them: a target's bookmark never covers a record
it did not get.

STATE is written after every parent's child sync (thousands per run). The SDK's `StateWriter`
deep-copies the whole state after each one to see the next change, and `StateMessage.to_dict`
walks it again with `dataclasses.asdict`: measured at a quarter of the tap's CPU on the
Perform & Engage detail workload. `sdk_compat.ChangedStateWriter` compares the encoded state
instead, and here a STATE line is encoded straight from the state dict.
"""

from __future__ import annotations

import datetime
import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter, encoder, serialize_jsonl
from singer_sdk.singerlib import Message, RecordMessage, StateMessage
from typing_extensions import override

from tap_conversations.delivery import write_all


class StateFlushingWriter(MsgSpecWriter):
    """`MsgSpecWriter` that flushes stdout after every message except RECORD."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._record_prefixes: dict[str, bytes] = {}

    @override
    def write_message(self, message: Message) -> None:
        # RECORD: the hot path, one call per record. Never written during a delivery, where a
        # signal is held and a short write would go unnoticed (`delivery.write_all`).
        if type(message) is RecordMessage:
            sys.stdout.buffer.write(serialize_jsonl(message.to_dict()))
            return
        write_all(sys.stdout.buffer, self.format_message(message))
        sys.stdout.flush()

    def write_encoded_records(
        self,
        stream: str,
        records_json: t.Sequence[bytes | memoryview],
        version: int | None,
        time_extracted: datetime.datetime,
    ) -> None:
        """A RECORD message around each of `records_json`, byte for byte what writing a
        `RecordMessage` of the decoded record gives (`sdk_compat.EncodedRecordWriter`), all
        joined in C: what ends one line and starts the next is the same for every record."""
        if not records_json:
            return
        prefix = self._record_prefixes.get(stream)
        if prefix is None:  # `{"type":"RECORD","stream":"<stream>","record":`, once a stream
            prefix = b'{"type":"RECORD","stream":%s,"record":' % encoder.encode(stream)
            self._record_prefixes[stream] = prefix
        versioned = b"" if version is None else b',"version":%d' % version
        suffix = b"".join(
            (versioned, b',"time_extracted":', encoder.encode(time_extracted), b"}\n")
        )
        out = sys.stdout.buffer
        write_all(out, b"".join((prefix, (suffix + prefix).join(records_json), suffix)))

    @override
    def serialize_message(self, message: Message) -> bytearray:
        if type(message) is StateMessage:  # `to_dict` would copy the whole state first
            return serialize_jsonl({"type": "STATE", "value": message.value})
        return super().serialize_message(message)
