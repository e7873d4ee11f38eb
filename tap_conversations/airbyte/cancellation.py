"""SIGTERM / SIGINT during a command: stop at a safe point, then report it like any failure.

Airbyte cancels a sync with SIGTERM. The SDK's own handler writes a STATE and exits from
inside the signal handler, which here could re-enter the output while the interrupted code is
half-way through a line (a deadlock, or a torn line). This handler instead raises
`ReadCancelled` at once; when the main thread is in the middle of writing a line, as soon as
the next message is written; during a delivery (records written, the bookmark not yet moved
past them: `delivery.DeliveryGuard`), as soon as it ends. The tap then sends the state of what
was delivered (its `sync_all` does on any exception), and the CLI ends with a transient TRACE
error and exit 1.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from tap_conversations.airbyte.protocol import MessageOutput
    from tap_conversations.delivery import DeliveryGuard

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
        self.raised = False
        self.stop_events: list[threading.Event] = []
        self.deliveries: list[DeliveryGuard] = []

    def install(
        self, stopping: threading.Event | None = None, delivery: DeliveryGuard | None = None
    ) -> None:
        """Handle SIGTERM and SIGINT here.

        On a signal, `stopping` (a tap's own event) is set too: it ends the waits of the tap's
        providers, e.g. a Retry-After pause on a worker thread. A signal during a `delivery` of
        that tap is raised when it ends.
        """
        if stopping is not None:
            self.stop_events.append(stopping)
        if delivery is not None:
            self.deliveries.append(delivery)
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
        if self.raised:
            return  # already stopping: let the state be written
        self.pending = signal.Signals(signum)
        for stopping in self.stop_events:
            stopping.set()
        if not self.output.writing_here() or any(guard.active for guard in self.deliveries):
            self.raise_pending()

    def raise_pending(self) -> None:
        """Raise `ReadCancelled` if a signal is waiting (once); during a delivery, when it ends
        (a STATE the delivery writes must not stop it half-way)."""
        if self.pending is None or self.raised:
            return
        if delivering := [guard for guard in self.deliveries if guard.active]:
            delivering[0].hold(self.raise_pending)
            return
        self.raised = True
        msg = f"stopped by {self.pending.name}: the command was cancelled"
        raise ReadCancelled(msg)
