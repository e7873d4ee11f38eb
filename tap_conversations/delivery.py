"""Records written and the bookmark moved past them, as one step a termination signal waits for.

A list stream writes its records a window at a time (`client.ApiStream.replicate`) and then
moves its bookmark past the window. A SIGTERM or SIGINT that stopped the run between the two
would leave a STATE that does not cover records the target already has: the next run would
send them again. So the signal handlers (`sdk_compat.CompatTap._handle_termination`, and the
Airbyte source's `airbyte.cancellation.Cancellation`) hold a signal that comes during a
delivery, and act on it as soon as the delivery ends. A delivery does no waiting of its own
(no request, no backoff): the longest it holds a signal is a write to a target that does not
read, and stopping in the middle of that write would tear a line.
"""

from __future__ import annotations

import contextlib
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class DeliveryGuard:
    """`with guard():` marks a delivery; `hold(act)` defers `act` (which stops the run) to its
    end."""

    def __init__(self) -> None:
        self._depth = 0
        self._held: Callable[[], None] | None = None

    @property
    def active(self) -> bool:
        """Whether a delivery is under way."""
        return self._depth > 0

    @property
    def holding(self) -> bool:
        """Whether a signal waits for the delivery to end."""
        return self._held is not None

    def hold(self, act: Callable[[], None]) -> None:
        """Run `act` when the delivery under way ends."""
        self._held = act

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and (act := self._held) is not None:
                self._held = None
                act()


def write_all(out: t.BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """`out.write(data)`, all of it, however often a signal interrupts it."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking raw stream that would block: never spin on it
            raise BlockingIOError(0, "the output would block", len(data) - len(view))
        view = view[written:]
