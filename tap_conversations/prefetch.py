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
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor
from threading import Lock

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

Row = dict[str, t.Any]
_Key = tuple[str, tuple[tuple[str, t.Any], ...]]


class PrefetchableChild(t.Protocol):
    """A child stream whose records for one parent can be fetched on a worker thread."""

    @property
    def name(self) -> str: ...

    def fetch_records(self, context: Context | None) -> list[Row]: ...


class PageSender(t.Protocol):
    """A list stream whose pages can be requested on a worker thread."""

    def send_prepared(
        self, request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response: ...


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
        # List pages requested ahead (a list stream's scan), by URL; the requests still to send.
        self._pages: dict[str, Future[requests.Response]] = {}
        self._page_queue: collections.deque[
            tuple[PageSender, requests.PreparedRequest, Context | None]
        ] = collections.deque()
        self._on_worker = threading.local()

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

    # List pages ----------------------------------------------------------------------------

    def pages_ahead(
        self,
        stream: PageSender,
        requests_: t.Sequence[requests.PreparedRequest],
        context: Context | None,
    ) -> None:
        """Send these list-page requests ahead, `max_concurrency` at a time.

        The stream's own paging then asks for each page in turn and `take_page` hands it the
        response already received. A page it never asks for (the list shrank) is cancelled by
        `forget_pages`.
        """
        if not self.enabled:
            return
        with self._lock:
            self._page_queue.extend((stream, request, context) for request in requests_)
        self._send_pages()

    def take_page(self, url: str | None) -> Future[requests.Response] | None:
        """The response to this page request, if it was sent ahead (never on a worker)."""
        if url is None or getattr(self._on_worker, "page", False):
            return None
        with self._lock:
            future = self._pages.pop(url, None)
        if future is not None:
            self._send_pages()
        return future

    def forget_pages(self) -> None:
        with self._lock:
            self._page_queue.clear()
            futures = list(self._pages.values())
            self._pages.clear()
        for future in futures:
            future.cancel()

    def _send_pages(self) -> None:
        with self._lock:
            while self._page_queue and len(self._pages) < self.max_concurrency:
                stream, request, context = self._page_queue.popleft()
                if request.url is not None and request.url not in self._pages:
                    self._pages[request.url] = self._pool().submit(
                        self._send_page, stream, request, context
                    )

    def _send_page(
        self, stream: PageSender, request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        self._on_worker.page = True
        return stream.send_prepared(request, context)

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
        self.forget_pages()
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for future in pending:
            future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None
