"""The two paging styles of these APIs, each ending on the API's own signal.

The SDK's paginators stop on an empty page (one extra request per stream) and only catch a
token equal to the one just before it. Here paging ends on what the API says — a null `next`,
a short page, an announced total — and a server that contradicts itself (a loop, an empty page
that links on, a total that disagrees with what was delivered, a repeated page) ends the stream
with one line through `PagingCheck.fail`, never a loop or a silent gap.
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from singer_sdk.pagination import BaseHATEOASPaginator, PageNumberPaginator
from typing_extensions import override

from tap_conversations.errors import PaginationError, prefix
from tap_conversations.transport import decoded_body

if t.TYPE_CHECKING:
    import requests


class PagedStream(t.Protocol):
    """What a paginator needs of its stream."""

    provider_label: t.ClassVar[str]

    @property
    def name(self) -> str: ...

    @property
    def primary_keys(self) -> t.Sequence[str] | None: ...

    def records_in(
        self, body: t.Any, response: requests.Response
    ) -> t.Iterable[dict[str, t.Any]]: ...

    def total_in(self, body: t.Any) -> int | None: ...


class PagingCheck:
    """Counts what a stream's pages delivered; the one place paging failures are raised."""

    def __init__(self, stream: PagedStream) -> None:
        self.stream = stream
        self.records_read = 0

    def fail(self, problem: str) -> t.NoReturn:
        msg = f"{prefix(self.stream)}: paging stopped because {problem}"
        raise PaginationError(msg)

    def list_moved(self) -> bool:
        """Whether the stream's scan already saw the list change under it: then counts that
        disagree are that change (the scan is read again), not a server contradicting itself."""
        watch = getattr(self.stream, "scan_watch", None)
        return watch is not None and not watch.clean


class NextUrlPaginator(BaseHATEOASPaginator):
    """Django REST Framework paging: follow `next` (an absolute URL) until it is null.

    Taking limit, offset and filters from the server's own link makes a server-side `limit` cap
    safe. `count` is checked against what was delivered when the last page arrives. Each page
    after the first starts one record early, on the previous page's last record: a list that
    shifted between two pages shows there (`snapshot.ScanWatch`), and the stream drops the
    repeated record.
    """

    def __init__(self, stream: PagedStream) -> None:
        super().__init__()
        self.check = PagingCheck(stream)
        self._seen: set[str] = set()
        self._overlaps = False  # whether the page just received starts one record early

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        return True  # an empty page is checked in `get_next_url`, not silently ended on

    @override
    def get_next_url(self, response: requests.Response) -> str | None:
        body = decoded_body(response)
        next_url: str | None = body.get("next")
        on_page = len(body.get("results") or [])
        self.check.records_read += on_page - (1 if self._overlaps and on_page else 0)
        self._overlaps = False
        count = body.get("count")
        if next_url:
            next_url = self._one_record_early(next_url)
        if next_url in self._seen:
            self.check.fail(f"its `next` link repeats a page already read ({next_url})")
        if next_url and not on_page:
            self.check.fail(f"it sent an empty page that still links to another ({next_url})")
        moved = self.check.list_moved()
        if (
            not next_url
            and isinstance(count, int)
            and count != self.check.records_read
            and not moved
        ):
            self.check.fail(
                f"it announced count={count} but delivered {self.check.records_read} records"
            )
        if next_url:
            self._seen.add(next_url)
        return next_url

    def _one_record_early(self, url: str) -> str:
        url, self._overlaps = one_record_early(url)
        return url


def one_record_early(url: str) -> tuple[str, bool]:
    """`url` with its `offset` one less (and whether it changed): pages overlap by a record.

    Not with pages of one record (`limit=1`): such a page, started one early, would be the
    page before it again.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    offsets = [int(v) for k, v in query if k == "offset" and v.isdigit()]
    limits = [v for k, v in query if k == "limit"]
    if len(offsets) != 1 or offsets[0] < 1 or (limits and limits[0] in {"0", "1"}):
        return url, False
    query = [(k, str(offsets[0] - 1) if k == "offset" else v) for k, v in query]
    return urlunsplit(parts._replace(query=urlencode(query))), True


class PageNumberUntilShortPaginator(PageNumberPaginator):
    """1-based page numbers, ending on an empty or short page, or once `total` were read.

    `page_size(body)` is the size a full page has: what was asked, or what the server says it
    applied (Respondent may apply less than asked).
    """

    def __init__(self, stream: PagedStream, page_size: t.Callable[[t.Any], int]) -> None:
        super().__init__(start_value=1)
        self.check = PagingCheck(stream)
        self._stream = stream
        self._page_size = page_size
        self._previous_first: t.Any = None

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        return True  # let `has_more` see the empty page, to compare it with the total

    @override
    def has_more(self, response: requests.Response) -> bool:
        body = decoded_body(response)
        page = list(self._stream.records_in(body, response))
        self.check.records_read += len(page)
        keys = self._stream.primary_keys or ()
        first = tuple(page[0].get(k) for k in keys) if page else None
        if first is not None and first == self._previous_first:
            self.check.fail(f"page {self.current_value} repeats the previous page")
        self._previous_first = first
        total = self._stream.total_in(body)
        more = bool(page) and len(page) >= self._page_size(body)
        if total is not None:
            read = self.check.records_read
            if read > total or (not more and read < total):
                self.check.fail(f"it announced {total} records but delivered {read}")
            more = read < total
        return more


class PageKeys(t.Sequence[str]):
    """The keys of a page's records as text, worked out only where looked at (`ScanWatch.page`
    reads the first and the last of a page of up to 1,000)."""

    def __init__(self, rows: t.Sequence[t.Any], key: str) -> None:
        self.rows, self.key = rows, key

    def __len__(self) -> int:
        return len(self.rows)

    @t.overload
    def __getitem__(self, index: int) -> str: ...

    @t.overload
    def __getitem__(self, index: slice) -> t.Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | t.Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self.rows[index]
        return str(row.get(self.key)) if isinstance(row, dict) else ""
