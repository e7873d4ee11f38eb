"""Retries without waiting: the request gates' clock and sleep replaced for one test.

`RequestGate.now` and `RequestGate.sleep` are where every backoff and `Retry-After` wait of the
tap happens (`gate.RequestGate`); here a wait is recorded and moves the gates' clock on at once.
"""

from __future__ import annotations

import threading
import time
import typing as t

import pytest

from tap_conversations.errors import Interrupted, ProviderError
from tap_conversations.transport import RequestGate
from tests.helpers import sync


class SkippedWaits:
    """The gates' time: real time plus every wait skipped so far."""

    def __init__(self) -> None:
        self.waits: list[float] = []  # every wait asked for, in seconds, in order
        self._skipped = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() + self._skipped

    def sleep(self, gate: RequestGate, seconds: float) -> None:
        if gate.stopping.is_set():
            raise Interrupted
        with self._lock:
            self.waits.append(seconds)
            self._skipped += max(seconds, 0.0)


def skip_waits(monkeypatch: pytest.MonkeyPatch) -> SkippedWaits:
    """Make every gate of this test skip its waits (and record them)."""
    skipped = SkippedWaits()

    def sleep(gate: RequestGate, seconds: float) -> None:
        skipped.sleep(gate, seconds)

    monkeypatch.setattr(RequestGate, "now", staticmethod(skipped.now))
    monkeypatch.setattr(RequestGate, "sleep", sleep)
    return skipped


def failure_line(config: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """The one line an in-process sync of `config` fails with, its waits skipped."""
    skip_waits(monkeypatch)
    with pytest.raises(ProviderError) as failure:
        sync(config)
    (line,) = str(failure.value).splitlines()
    return line
