"""`CompatTap`: the tap-level overrides (`Tap.sync_all`, signals, the state writer), and the
CLI's parsed `--config`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import typing as t
from dataclasses import dataclass

from singer_sdk import Tap
from singer_sdk.contrib.msgspec import encoder as json_encoder
from singer_sdk.helpers._state import StateWriter
from singer_sdk.singerlib import StateMessage
from typing_extensions import override

from tap_conversations.delivery import DeliveryGuard
from tap_conversations.errors import Terminated

if t.TYPE_CHECKING:
    from types import FrameType

    import click
    from singer_sdk.helpers.types import TapState
    from singer_sdk.streams.core import Stream


def cli_config(ctx: click.Context) -> tuple[dict[str, t.Any], bool]:
    """The merged `--config` files and whether `--config ENV` was given, in a CLI callback.

    Why: `Tap.cb_discover` is the only way to `--discover` and builds the tap without
    validating its config; a replacement needs what the SDK's eager `--config` callback
    parsed, a `singer_sdk.plugin_base._ConfigInput` (private) in `ctx.params["config"]`.
    """
    parsed = ctx.params.get("config")
    if parsed is None:
        return {}, False
    return dict(parsed.config), bool(parsed.parse_env)


@dataclass
class GroupFailure:
    """One group of streams (a provider) that stopped on an error."""

    group: str
    error: Exception


class ChangedStateWriter(StateWriter):
    """Writes a STATE message when the state differs from the last one written.

    Why: the SDK's `StateWriter` (private module) keeps a deep copy of the last state to see
    the next change; STATE is written after every parent's child sync, and the copy was a
    large share of the tap's CPU on the Perform & Engage detail workload (`output.py` says
    more). Comparing the state's JSON encoding gives the same answer (two equal states
    encoded in another key order cost one extra STATE). `CompatTap.state_writer` hands it to
    the streams; the SDK's own uses of `_state_writer` are in `Tap.sync_all` and
    `_handle_termination`, both replaced below. Guarded by tests/test_sdk_compat_state.py.
    """

    def __init__(self, message_writer: t.Any) -> None:
        super().__init__(message_writer)
        self._last_encoded: bytes | None = None

    @override
    def write_state(self, state: TapState) -> None:
        encoded = json_encoder.encode(state)
        if encoded != self._last_encoded:
            self._message_writer.write_message(StateMessage(value=state))
            self._last_encoded = encoded


class CompatTap(Tap):
    """The tap-level overrides: `Tap.sync_all` (`@final`) and `_handle_termination`."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        #: Set by SIGTERM/SIGINT; every provider's request gate ends its waits on it.
        self.stopping = threading.Event()
        #: Records being written and the bookmark moved past them: a signal waits for it.
        self.delivery = DeliveryGuard()
        super().__init__(*args, **kwargs)
        self._changed_state_writer = ChangedStateWriter(self.message_writer)

    @property
    @override
    def state_writer(self) -> StateWriter:
        return self._changed_state_writer

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Why: the SDK's handler (installed by `PluginBase.__init__` for SIGTERM and SIGINT)
        # writes the state from inside the signal handler and calls `sys.exit(0)`, so an
        # interrupted run looks complete to an orchestrator, and worker threads waiting out a
        # Retry-After keep the process alive. No public hook exists. Here the handler wakes
        # every wait (`stopping`) and raises `Terminated` in the main thread; `sync_all` then
        # writes the state reached (`after_failed_sync`) and `invoke` exits 128 + signum.
        # A second signal while stopping exits at once. A signal during a delivery (records
        # written, the bookmark not yet past them: `delivery`) waits for its end.
        exit_code = 128 + signum
        if self.stopping.is_set() or self.delivery.holding:
            os._exit(exit_code)
        if self.delivery.active:
            self.delivery.hold(lambda: self._handle_termination(signum, frame))
            return
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
        # before or after it, nor around each stream. The SDK's loop stops the whole run at
        # the first failing stream; here streams run in groups (one per provider, see
        # `sync_groups`) and a failure ends only its group: the other groups still run and
        # their STATE is written, then `after_groups` reports every failure.
        # It does what `Tap.sync_all` does (0.54.9): reset progress markers, fix replication
        # methods (private `_reset_state_progress_markers`, `_set_compatible_replication_
        # methods`), write the incoming state, sync each selected top-level stream and
        # finalize it, log sync costs. Guarded by tests/test_sdk_compat_logging.py.
        self.before_sync()
        failures: list[GroupFailure] = []
        try:
            self._reset_state_progress_markers()
            self._set_compatible_replication_methods()
            if self.state:
                self.state_writer.write_state(self.state)
            for group, streams in self.sync_groups():
                try:
                    self.before_group(group, streams)
                    for stream in streams:
                        stream.sync()
                        stream.finalize_state_progress_markers()
                except Exception as error:
                    failures.append(GroupFailure(group, error))
                    # The failed stream keeps its previous bookmark (its lists are unsorted,
                    # so progress within it cannot be kept); its progress markers go.
                    self._reset_state_progress_markers()
                    self.state_writer.write_state(self.state)
                    self.after_failed_group(group, streams, error)
            for stream in self.streams.values():
                stream.log_sync_costs()
        except BaseException:
            self.after_failed_sync()
            raise
        finally:
            self.after_sync()
        self.after_groups(failures)

    def sync_groups(self) -> list[tuple[str, list[Stream]]]:
        """The selected top-level streams, in groups that fail independently (default: one)."""
        return [("all streams", self.top_level_streams())]

    def top_level_streams(self) -> list[Stream]:
        """Streams the run syncs directly: selected (or with selected children), no parent."""
        return [
            stream
            for stream in self.streams.values()
            if (stream.selected or stream.has_selected_descendents)
            and stream.parent_stream_type is None
        ]

    def before_sync(self) -> None:
        """Called before any stream syncs."""

    def before_group(self, group: str, streams: list[Stream]) -> None:
        """Called before a group's first stream syncs."""

    def after_failed_group(self, group: str, streams: list[Stream], error: Exception) -> None:
        """Called when a group stopped on `error`; the state written excludes its partial work."""

    def after_failed_sync(self) -> None:
        """Called when the run stops on an error no group caught, before `after_sync`."""

    def after_sync(self) -> None:
        """Called once the run ended, however it ended."""

    def after_groups(self, failures: list[GroupFailure]) -> None:
        """Called after `after_sync` with every group that failed (raise to fail the run)."""
        if failures:
            raise failures[0].error
