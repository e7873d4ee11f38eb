"""Concurrent detail requests and a per-provider request gate.

The SDK syncs a child stream inline, one parent record at a time, so detail requests go out
strictly one after another (meltano/sdk#183). `DetailPrefetcher` keeps the SDK's flow and
ordering untouched and only moves the waiting off the critical path: while the parent stream
yields its records, the detail requests of the next few records are already in flight on a
thread pool; when the SDK then syncs a record's child, the child takes its result instead of
requesting it. Every record, STATE and SCHEMA message is still written by the main thread, in
the order of a serial run.

`RequestGate` is what every request of one provider passes before it is sent: it holds all of
that provider's workers while a `Retry-After` pause runs, and spaces requests to honour an
optional requests-per-second cap.
"""

from __future__ import annotations

import collections
import threading
import time
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_conversations.client import ApiStream, DetailStream

Row = dict[str, t.Any]
_Key = tuple[str, tuple[tuple[str, t.Any], ...]]


def _key(stream: ApiStream, context: Context | None) -> _Key:
    return stream.name, tuple(sorted((context or {}).items()))


class DetailPrefetcher:
    """Fetches child detail records ahead of the parent record that needs them."""

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max_concurrency
        # Enough parents in flight to keep every worker busy, few enough to keep memory flat.
        self.window = max_concurrency * 2
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[_Key, Future[list[Row]]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_concurrency > 1

    def read_ahead(
        self,
        parent: ApiStream,
        rows: t.Iterable[Row],
        context: Context | None,
    ) -> t.Iterator[Row]:
        """Yield `rows` unchanged, with the detail requests of the next ones already sent."""
        children = [
            child
            for child in parent.child_streams
            if getattr(child, "prefetchable", False)
            and (child.selected or child.has_selected_descendents)
        ]
        if not self.enabled or not children:
            yield from rows
            return
        window: collections.deque[Row] = collections.deque()
        for row in rows:
            child_context = parent.get_child_context(row, context)
            for child in t.cast("list[DetailStream]", children):
                self._submit(child, child_context)
            window.append(row)
            if len(window) > self.window:
                yield window.popleft()
        while window:
            yield window.popleft()

    def take(self, stream: ApiStream, context: Context | None) -> Future[list[Row]] | None:
        """The in-flight result for this child context, if one was prefetched."""
        with self._lock:
            return self._pending.pop(_key(stream, context), None)

    def _submit(self, child: DetailStream, context: Context | None) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="detail"
            )
        future = self._executor.submit(child.fetch_records, context)
        with self._lock:
            self._pending[_key(child, context)] = future

    def close(self) -> None:
        """Stop the workers; requests not yet started are cancelled (error or Ctrl-C)."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for future in pending:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class RequestGate:
    """Holds one provider's requests during a Retry-After pause and under a rate cap."""

    def __init__(self, max_requests_per_second: float | None = None) -> None:
        self._interval = 1 / max_requests_per_second if max_requests_per_second else 0.0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every request of this provider for `seconds` from now."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def wait_turn(self) -> None:
        """Block until this provider may send its next request."""
        while True:
            with self._lock:
                now = time.monotonic()
                ready_at = max(self._paused_until, self._next_slot)
                if now >= ready_at:
                    self._next_slot = max(self._next_slot, now) + self._interval
                    return
            time.sleep(ready_at - now)
