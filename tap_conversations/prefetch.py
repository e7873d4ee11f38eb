"""Concurrent detail requests, fetched ahead of the parent record that needs them.

The SDK syncs a child stream inline, one parent record at a time, so detail requests go out
strictly one after another (meltano/sdk#183, open since 2021). `DetailPrefetcher` keeps the
SDK's flow and ordering untouched and only moves the waiting off the critical path: while the
parent stream yields its records, the detail requests of the next few records are already in
flight on a thread pool; when the SDK then syncs a record's child, the child takes its result
instead of requesting it. Every RECORD, STATE and SCHEMA message is still written by the main
thread, in the order of a serial run.
"""

from __future__ import annotations

import collections
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from threading import Lock

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

Row = dict[str, t.Any]
_Key = tuple[str, tuple[tuple[str, t.Any], ...]]


class PrefetchableChild(t.Protocol):
    """A child stream whose records for one parent can be fetched on a worker thread."""

    @property
    def name(self) -> str: ...

    def fetch_records(self, context: Context | None) -> list[Row]: ...


class ParentStream(t.Protocol):
    """What the prefetcher needs of a parent stream."""

    def get_child_context(self, record: Row, context: Context | None) -> Context | None: ...


def _key(stream: PrefetchableChild, context: Context | None) -> _Key:
    return stream.name, tuple(sorted((context or {}).items()))


class DetailPrefetcher:
    """Fetches child detail records ahead of the parent record that needs them."""

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max_concurrency
        # Enough parents in flight to keep every worker busy, few enough to keep memory flat.
        self.window = max_concurrency * 2
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[_Key, Future[list[Row]]] = {}
        self._lock = Lock()

    @property
    def enabled(self) -> bool:
        return self.max_concurrency > 1

    def read_ahead(
        self,
        parent: ParentStream,
        children: t.Sequence[PrefetchableChild],
        rows: t.Iterable[Row],
        context: Context | None,
    ) -> t.Iterator[Row]:
        """Yield `rows` unchanged, with the detail requests of the next ones already sent."""
        if not self.enabled or not children:
            yield from rows
            return
        window: collections.deque[Row] = collections.deque()
        for row in rows:
            child_context = parent.get_child_context(row, context)
            for child in children:
                self._submit(child, child_context)
            window.append(row)
            if len(window) > self.window:
                yield window.popleft()
        while window:
            yield window.popleft()

    def take(self, stream: PrefetchableChild, context: Context | None) -> Future[list[Row]] | None:
        """The in-flight result for this child context, if one was prefetched."""
        with self._lock:
            return self._pending.pop(_key(stream, context), None)

    # Workers ---------------------------------------------------------------------------------

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="detail"
            )
        return self._executor

    def _submit(self, child: PrefetchableChild, context: Context | None) -> None:
        future = self._pool().submit(child.fetch_records, context)
        with self._lock:
            self._pending[_key(child, context)] = future

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers; requests not yet started are cancelled (error or Ctrl-C).
        With `wait=False`, workers still inside a request are not waited for."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for future in pending:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None
