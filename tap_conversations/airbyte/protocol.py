"""Airbyte protocol messages: built from the maintained protocol models, written one per line.

The models come from `airbyte-protocol-models-dataclasses` (generated from the protocol's own
YAML; no dependencies). They are plain dataclasses, so serialising them is ours: fields that are
`None` are left out (as the Airbyte CDK does), enums become their values, `global_` is written
`global`, and free-form JSON (`data`, `json_schema`, `stream_state`, ...) is written as is.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import enum
import io
import os
import sys
import threading
import time
import typing as t

import msgspec
from airbyte_protocol_dataclasses import models  # type: ignore[import-untyped]

from tap_conversations.errors import ReaderGone

__all__ = ["StreamStateBlob", "models"]

#: Python names of model fields whose protocol name differs (a Python keyword).
_RENAMED_FIELDS = {"global_": "global"}


@dataclasses.dataclass
class StreamStateBlob(models.AirbyteStateBlob):  # type: ignore[misc]
    """A stream's state. The protocol leaves it free-form; the generated class has no fields."""

    value: dict[str, t.Any]


_field_names: dict[type, tuple[tuple[str, str], ...]] = {}
_JSON_LEAVES = (dict, str, int, float)  # free-form JSON and scalars: written as they are
_LEAF_TYPES = frozenset(_JSON_LEAVES) | {bool}


def to_builtins(value: t.Any) -> t.Any:
    """A model (or a list of them) as JSON-ready builtins, `None` fields left out."""
    names = _field_names.get(type(value))
    if names is not None:  # a model class seen before: the hot path, one per message
        result = {}
        for name, key in names:
            item = getattr(value, name)
            if item is not None:
                result[key] = item if type(item) in _LEAF_TYPES else to_builtins(item)
        return result
    if isinstance(value, _JSON_LEAVES):
        return value
    if isinstance(value, enum.Enum | StreamStateBlob):
        return value.value
    if isinstance(value, list):
        return [to_builtins(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _field_names[type(value)] = tuple(
            (f.name, _RENAMED_FIELDS.get(f.name, f.name)) for f in dataclasses.fields(value)
        )
        return to_builtins(value)
    return value


# msgspec writes datetimes (RFC 3339) and decimals (as numbers) itself; anything else as text.
_encoder = msgspec.json.Encoder(enc_hook=str, decimal_format="number")


def _builtins_of_message(message: t.Any) -> t.Any:
    """`to_builtins` of an AirbyteMessage, with a short cut for the plainest RECORD.

    A RECORD with only the required fields (what the source sends, once per record) is
    written from its fields directly; anything else goes through `to_builtins`.
    """
    record = message.record
    if (
        record is not None
        and message.type is models.Type.RECORD
        and record.namespace is None
        and record.meta is None
        and record.file_reference is None
    ):
        return record_payload(record.stream, record.data, record.emitted_at)
    return to_builtins(message)


def record_payload(stream: str, data: t.Any, emitted_at: int) -> dict[str, t.Any]:
    """What `to_builtins` makes of `record_message(stream, data, emitted_at)`, built without
    the two protocol dataclasses (once per record, they were a tenth of the source's CPU)."""
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": emitted_at}}


def serialize(message: t.Any) -> bytes:
    """One AirbyteMessage as one JSON line."""
    return _encoder.encode(_builtins_of_message(message)) + b"\n"


class MessageOutput:
    """Writes AirbyteMessages to stdout, whole lines only, from any thread.

    RECORD lines collect in a 64 KiB buffer of our own (stdout may be unbuffered, e.g. with
    PYTHONUNBUFFERED, which would cost one system call per record); every other message is
    flushed at once, so a STATE or LOG line never waits behind records. `writing_here` tells a
    signal handler whether its thread is in the middle of a line (see `cancellation`).
    """

    def __init__(self, stream: t.BinaryIO | None = None) -> None:
        if stream is None:
            stream = _stdout_buffered()
            atexit.register(self.flush)  # a log line from a thread still running at exit
        self._stream = stream
        self._lock = threading.Lock()
        self._line = bytearray()  # reused for every message, under the lock
        self._writer: int | None = None  # the thread holding the lock
        #: Whether the reader went away (EPIPE): every later write is dropped.
        self.closed = False

    def write(self, message: t.Any, *, flush: bool = True) -> None:
        self.write_builtins(_builtins_of_message(message), flush=flush)

    def write_builtins(self, payload: t.Any, *, flush: bool = True) -> None:
        """A message given as its builtins (`record_payload`)."""
        with self._lock:
            if self.closed:
                return
            self._writer = threading.get_ident()
            try:
                _encoder.encode_into(payload, self._line)
                self._line.extend(b"\n")
                self._stream.write(self._line)
                if flush:
                    self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()
            finally:
                self._writer = None

    def flush(self) -> None:
        with self._lock:
            if self.closed:
                return
            self._writer = threading.get_ident()
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()
            finally:
                self._writer = None

    def _reader_gone(self) -> t.NoReturn:
        """stdout's reader went away: nothing more is written (not even by the interpreter's
        last flush: the descriptor now points at /dev/null), and the read ends."""
        self.closed = True
        with (
            contextlib.suppress(AttributeError, OSError, ValueError),
            open(os.devnull, "wb") as null,
        ):
            os.dup2(null.fileno(), self._stream.fileno())
        raise ReaderGone from None

    def writing_here(self) -> bool:
        """Whether the calling thread is writing a line right now."""
        return self._writer == threading.get_ident()


def _stdout_buffered() -> t.BinaryIO:
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced, e.g. by a test harness
        return sys.stdout.buffer
    raw = io.FileIO(descriptor, "wb", closefd=False)
    return t.cast("t.BinaryIO", io.BufferedWriter(raw, buffer_size=1 << 16))


def now_ms() -> float:
    return time.time() * 1000


def record_message(stream: str, data: dict[str, t.Any], emitted_at: int) -> t.Any:
    return models.AirbyteMessage(
        type=models.Type.RECORD,
        record=models.AirbyteRecordMessage(stream=stream, data=data, emitted_at=emitted_at),
    )


def stream_state_message(stream: str, state: dict[str, t.Any], record_count: int) -> t.Any:
    return models.AirbyteMessage(
        type=models.Type.STATE,
        state=models.AirbyteStateMessage(
            type=models.AirbyteStateType.STREAM,
            stream=models.AirbyteStreamState(
                stream_descriptor=models.StreamDescriptor(name=stream),
                stream_state=StreamStateBlob(state),
            ),
            sourceStats=models.AirbyteStateStats(recordCount=float(record_count)),
        ),
    )


def stream_status_message(stream: str, status: t.Any) -> t.Any:
    return models.AirbyteMessage(
        type=models.Type.TRACE,
        trace=models.AirbyteTraceMessage(
            type=models.TraceType.STREAM_STATUS,
            emitted_at=now_ms(),
            stream_status=models.AirbyteStreamStatusTraceMessage(
                stream_descriptor=models.StreamDescriptor(name=stream), status=status
            ),
        ),
    )


def error_trace_message(message: str, failure_type: t.Any, stack_trace: str | None = None) -> t.Any:
    return models.AirbyteMessage(
        type=models.Type.TRACE,
        trace=models.AirbyteTraceMessage(
            type=models.TraceType.ERROR,
            emitted_at=now_ms(),
            error=models.AirbyteErrorTraceMessage(
                message=message, failure_type=failure_type, stack_trace=stack_trace
            ),
        ),
    )


def log_message(level: t.Any, message: str) -> t.Any:
    return models.AirbyteMessage(
        type=models.Type.LOG, log=models.AirbyteLogMessage(level=level, message=message)
    )


def connection_status_message(*, succeeded: bool, message: str) -> t.Any:
    status = models.Status.SUCCEEDED if succeeded else models.Status.FAILED
    return models.AirbyteMessage(
        type=models.Type.CONNECTION_STATUS,
        connectionStatus=models.AirbyteConnectionStatus(status=status, message=message),
    )
