"""SIGTERM / SIGINT during a command: stop cooperatively, then report it like any failure.

Airbyte cancels a sync with SIGTERM (PyAirbyte: SIGTERM, then a kill 10 s later). How it works
here: the handler records the signal (`pending`), starts the watchdog (`sdk_compat.exit_soon`:
the process exits with 128 + signum `GRACE_SECONDS` later, whatever it is doing) and asks each
tap to stop (`CompatTap.request_stop`: its waits end, and its sync stops at the next record
boundary, writing the STATE of what was written). Outside a sync (building a tap, discovery),
and when the main thread is not in the middle of writing a line, it raises `ReadCancelled` at
once. The CLI then ends with a transient TRACE error and exit code 128 + signum. A second
signal exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import typing as t

from tap_conversations.sdk_compat import exit_soon

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from tap_conversations.airbyte.protocol import MessageOutput
    from tap_conversations.sdk_compat import CompatTap

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ReadCancelled(BaseException):  # like KeyboardInterrupt: not an Exception to catch
    """The platform asked the source to stop (SIGTERM or SIGINT)."""


class Cancellation:
    """Our handler for SIGTERM and SIGINT.

    `install` it again after building a tap: the SDK's constructor installs its own.
    """

    def __init__(self, output: MessageOutput) -> None:
        self.output = output
        self.pending: signal.Signals | None = None
        self.taps: list[CompatTap] = []

    @property
    def exit_code(self) -> int | None:
        """128 + the signal that cancelled the command, if one did."""
        return None if self.pending is None else 128 + self.pending

    def install(self, tap: CompatTap | None = None) -> None:
        """Handle SIGTERM and SIGINT here; a signal asks `tap` to stop too."""
        if tap is not None:
            self.taps.append(tap)
        for signum in SIGNALS:
            signal.signal(signum, self._handle)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold SIGTERM and SIGINT back while code we do not control builds taps.

        Each tap installs the SDK's handler, which would print a Singer STATE; signals held
        back reach ours once the block ends.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            yield
        finally:
            self.install()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.pending is not None:
            os._exit(128 + signum)
        self.pending = signal.Signals(signum)
        exit_soon(128 + signum)
        for tap in self.taps:
            tap.request_stop(signum)
        if not self.output.writing_here() and not any(tap.syncing for tap in self.taps):
            msg = f"stopped by {self.pending.name}: the command was cancelled"
            raise ReadCancelled(msg)
