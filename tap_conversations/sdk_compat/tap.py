"""`CompatTap`: the tap-level overrides (`Tap.sync_all`, SIGTERM/SIGINT), how a run stops
(cooperatively, with a watchdog) or ends when stdout's reader goes away, and the CLI's parsed
`--config`."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import typing as t
from dataclasses import dataclass

from singer_sdk import Tap
from typing_extensions import override

from tap_conversations.errors import READER_GONE, Interrupted, ReaderGone, Terminated

if t.TYPE_CHECKING:
    from types import FrameType

    import click
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


#: Seconds a stopping run has to end by itself before the watchdog ends the process.
GRACE_SECONDS = 3.0


def exit_soon(exit_code: int, grace: float = GRACE_SECONDS) -> threading.Timer:
    """End the process with `exit_code` in `grace` seconds, whatever the main thread does."""
    watchdog = threading.Timer(grace, os._exit, (exit_code,))
    watchdog.daemon = True
    watchdog.start()
    return watchdog


def leave(exit_code: int) -> t.NoReturn:
    """Flush stderr and end the process now: requests still in flight on worker threads would
    hold the interpreter's exit until their timeout."""
    sys.stderr.flush()
    os._exit(exit_code)


def silence_stdout() -> None:
    """Point stdout at /dev/null: its reader is gone, and nothing may be written any more
    (not even by the interpreter's last flush)."""
    with contextlib.suppress(OSError, ValueError), open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())


class CompatTap(Tap):
    """The tap-level overrides: `Tap.sync_all` (`@final`) and `_handle_termination`.

    How a run stops on SIGTERM or SIGINT (cooperative cancellation): the handler only records
    the signal (`stopped_by`), sets `stopping` and starts a watchdog (`exit_soon`). Every
    request-gate wait and backoff sleep ends on `stopping` (`errors.Interrupted`), and every
    stream checks it at each record boundary (`raise_if_stopping`, from `post_process`: every
    record before it is written and its bookmark moved). Either way `Terminated` ends
    `sync_all`, which writes the STATE of what was written; `invoke` exits 128 + signum. If the
    run has not ended `GRACE_SECONDS` after the signal (its main thread blocked, e.g. writing
    to a reader that stopped reading), the watchdog exits with the same code at once, writing
    nothing more: the last STATE written never covers a record that was not. A second signal
    exits at once. A reader that goes away (EPIPE on stdout) ends the run with `ReaderGone`:
    no STATE, one line, exit 1.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        #: Set by SIGTERM/SIGINT; every provider's request gate ends its waits on it.
        self.stopping = threading.Event()
        #: The signal that asked the run to stop, once one did.
        self.stopped_by: signal.Signals | None = None
        #: Whether `sync_all` is under way (it then stops by itself, at a record boundary).
        self.syncing = False
        #: Whether stdout's reader went away: nothing more is written.
        self.reader_gone = False
        super().__init__(*args, **kwargs)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # Why: the SDK's handler (installed by `PluginBase.__init__` for SIGTERM and SIGINT)
        # writes the state from inside the signal handler and calls `sys.exit(0)`, so an
        # interrupted run looks complete to an orchestrator, a STATE can be written in the
        # middle of a RECORD line, and worker threads waiting out a Retry-After keep the
        # process alive. No public hook exists. Here it only asks the run to stop (see the
        # class docstring); a second signal exits at once.
        if self.stopped_by is not None:
            os._exit(128 + signum)
        self.request_stop(signum)
        exit_soon(128 + signum)

    def request_stop(self, signum: int) -> None:
        """Ask the run to stop at its next record boundary or wait (see the class docstring)."""
        self.stopped_by = signal.Signals(signum)
        self.stopping.set()

    def raise_if_stopping(self) -> None:
        """Raise `Terminated` if a signal asked the run to stop (at a record boundary)."""
        if self.stopped_by is not None:
            raise Terminated(self.stopped_by.name, 128 + self.stopped_by)

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
            with contextlib.suppress(OSError, ValueError):  # a reader gone meanwhile
                sys.stdout.flush()
            leave(stop.exit_code)
        except ReaderGone:
            silence_stdout()
            cls.logger.error("%s", READER_GONE)
            leave(1)

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
        self.syncing = True
        try:
            with self._reader_gone_is_one_error():
                try:
                    try:
                        self._sync_groups(failures)
                    except Interrupted:  # a wait ended on the signal: stop as at a boundary
                        self.raise_if_stopping()
                        raise
                except BaseException as error:
                    if not isinstance(error, BrokenPipeError | ReaderGone):
                        self.after_failed_sync()  # the state of what was written
                    raise
        finally:
            self.syncing = False
            self.after_sync()
        self.after_groups(failures)

    def _sync_groups(self, failures: list[GroupFailure]) -> None:
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
            except BrokenPipeError:
                raise
            except Exception as error:
                failures.append(GroupFailure(group, error))
                # The failed stream keeps its previous bookmark (its lists are unsorted, so
                # progress within it cannot be kept); its progress markers go.
                self._reset_state_progress_markers()
                self.state_writer.write_state(self.state)
                self.after_failed_group(group, streams, error)
        for stream in self.streams.values():
            stream.log_sync_costs()

    @contextlib.contextmanager
    def _reader_gone_is_one_error(self) -> t.Iterator[None]:
        """A `BrokenPipeError` on stdout becomes `ReaderGone`: no STATE after it."""
        try:
            yield
        except BrokenPipeError:
            self.reader_gone = True
            raise ReaderGone from None
        except ReaderGone:  # the Airbyte source's output says so itself
            self.reader_gone = True
            raise

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
