"""Every use of private (`_name`) or `@final` singer-sdk surface, in one place.

Each entry says why no public hook serves and is guarded by `tests/test_sdk_compat.py`, whose
tests fail when an SDK upgrade renames, stops calling or changes what is overridden here. The
rest of the package only uses the SDK's public API, through `CompatStream` and `CompatTap`.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import threading
import typing as t

from singer_sdk import RESTStream, Tap
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_conversations.errors import Terminated

if t.TYPE_CHECKING:
    from types import FrameType


class CompatStream(RESTStream[t.Any]):
    """The stream-level overrides of private SDK methods."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_sent = False

    @property
    def nested_deselection(self) -> bool:
        """Whether the catalog deselected any nested property (subclasses know)."""
        return True

    @property
    def deselected_fields(self) -> frozenset[str]:
        """Top-level properties the catalog deselected (subclasses know)."""
        return frozenset()

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
        if self.nested_deselection:
            pop_deselected_record_properties(record, self.schema, self.mask)
        else:
            for name in self.deselected_fields:
                record.pop(name, None)
        now = datetime.datetime.now(datetime.UTC)
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=now,
                )

    @override
    def _write_schema_message(self) -> None:
        # Why: the SDK writes a child stream's SCHEMA once per parent record (each parent
        # starts a child sync). One per stream and run is all a target needs; the rest is noise
        # that grows with the account (meltano/sdk#1061). No public hook decides this.
        if not self._schema_sent:
            super()._write_schema_message()
            self._schema_sent = True

    def reset_schema_sent(self) -> None:
        """A new run writes each SCHEMA again (once)."""
        self._schema_sent = False


class CompatTap(Tap):
    """The tap-level overrides: `Tap.sync_all` (`@final`) and `_handle_termination`."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        #: Set by SIGTERM/SIGINT; every provider's request gate ends its waits on it.
        self.stopping = threading.Event()
        super().__init__(*args, **kwargs)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Why: the SDK's handler (installed by `PluginBase.__init__` for SIGTERM and SIGINT)
        # writes the state from inside the signal handler and calls `sys.exit(0)`, so an
        # interrupted run looks complete to an orchestrator, and worker threads waiting out a
        # Retry-After keep the process alive. No public hook exists. Here the handler wakes
        # every wait (`stopping`) and raises `Terminated` in the main thread; `sync_all` then
        # writes the state reached (`after_failed_sync`) and `invoke` exits 128 + signum.
        # A second signal while stopping exits at once.
        exit_code = 128 + signum
        if self.stopping.is_set():
            os._exit(exit_code)
        self.stopping.set()
        raise Terminated(signal.Signals(signum).name, exit_code)

    @classmethod
    @override
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        try:
            super().invoke(*args, **kwargs)
        except Terminated as stop:
            cls.logger.warning(
                "Stopped by %s before the end: the state of everything delivered was written; "
                "exit code %d",
                stop.signal_name,
                stop.exit_code,
            )
            # Requests still in flight on worker threads would hold the interpreter's exit
            # until their timeout: everything the target needs is written, so leave now.
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os._exit(stop.exit_code)

    @override  # type: ignore[misc]
    def sync_all(self) -> None:
        # Why: `sync_all` is the one place that sees a whole run, and the SDK offers no hook
        # before or after it. `before_sync` refuses a run with no provider and resets per-run
        # caches; `after_sync` writes the state reached when a run fails (so a target keeps
        # everything delivered) and closes pooled connections.
        self.before_sync()
        try:
            super().sync_all()
        except BaseException:
            self.after_failed_sync()
            raise
        finally:
            self.after_sync()

    def before_sync(self) -> None:
        """Called before any stream syncs."""

    def after_failed_sync(self) -> None:
        """Called when the run stops on an error, before `after_sync`."""

    def after_sync(self) -> None:
        """Called once the run ended, however it ended."""
