"""The stream base class `ApiStream`, for every endpoint, and the two paging styles.

A provider module subclasses `ApiStream` once for its protocol (auth, paging, envelope) and then
once per endpoint, so each endpoint class is a few declarative lines next to its schema.
`ApiStream` holds what is done with what the API answers (pages, records, the list's
replication, bookmarks); `requesting.ProviderStream`, its base, how requests are sent, retried
and judged. What the base classes use lives beside them: `transport` (session, auth cache,
retries, body decoding; its request gate in `gate`), `records` (schema checks), `replication`,
`prefetch` (concurrent details), `errors`.

Paging (the end of this module) ends on what the API says — a null `next`, a short page, an
announced total — not on an empty page as the SDK's paginators do (one extra request per
stream, and only a token equal to the one just before it counts as a loop). A server that
contradicts itself (a loop, an empty page that links on, a total that disagrees with what was
delivered, a repeated page) ends the stream with one line through `PagingCheck.fail`, never a
loop or a silent gap.
"""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import BaseHATEOASPaginator, PageNumberPaginator
from typing_extensions import override

from tap_conversations.errors import PaginationError, ProviderError, prefix
from tap_conversations.records import RecordChecker
from tap_conversations.replication import (
    SENT,
    ListReplication,
    bookmark_ceiling,
    in_the_future,
)
from tap_conversations.requesting import ProviderStream
from tap_conversations.transport import decoded_body

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.core import Stream
    from singer_sdk.tap_base import Tap

    from tap_conversations.prefetch import PrefetchableChild
    from tap_conversations.snapshot import ScanWatch


def is_detail_stream(stream: Stream) -> bool:
    """Whether `stream` is fetched one request per parent record (a `detail.DetailStream`)."""
    return bool(getattr(stream, "fetched_per_parent", False))


class ApiStream(ProviderStream):
    """Base class of every stream in this tap: what it does with the records it reads."""

    # `records.RecordChecker` checks every record's types before the SDK sees it, and the
    # values come straight from JSON, so the SDK's conformance pass has nothing left to do.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    #: Top-level fields turned into text before the record checks (ids the docs leave
    #: untyped, e.g. onQ's); see `records.RecordChecker`.
    text_fields: tuple[str, ...] = ()

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap=tap)
        self.checker = RecordChecker(self, self.config.get("schema_evolution") or "evolve")
        #: Set while a list stream scans its list (`replication`), for `parse_response`.
        self.scan_watch: ScanWatch | None = None
        #: The list stream's replication in progress, for its detail children to report to.
        self.replication: ListReplication | None = None
        #: A child's bookmark stays below this (the run's start less the clock margin; set
        #: again by `reset_for_sync`, for a tap that runs more than once).
        self.bookmark_ceiling = bookmark_ceiling()
        #: The record whose children are being synced (see `generate_child_contexts`).
        self.record_for_children: dict[str, t.Any] | None = None

    # Pages ------------------------------------------------------------------------------

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        body = decoded_body(response)
        rows = list(self.records_in(body, response))
        if (watch := self.scan_watch) is not None:
            key = (self.primary_keys or ("id",))[0]
            keys = [str(row.get(key)) if isinstance(row, dict) else "" for row in rows]
            position = self.page_position(response)
            overlap = watch.page(position, keys, self.total_in(body))
            rows = rows[overlap:]
        return rows

    def page_position(self, response: requests.Response) -> int | None:
        """Where a list page starts in the whole list (0-based), if the protocol says."""
        return None

    def records_in(self, body: t.Any, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        """The records of one decoded page; by default the body is one record."""
        if not isinstance(body, dict):
            msg = f"{self.describe(response)}: expected a JSON object, got {type(body).__name__}"
            raise ProviderError(msg)
        return [body]

    def total_in(self, body: t.Any) -> int | None:
        """The total record count the API announces in a page body, if it does."""
        return None

    def announce_total(self, total: int) -> None:
        """The API said how many records this stream (and so each detail child) will have."""
        for stream in (self, *(c for c in self.child_streams if is_detail_stream(c))):
            self.conversations_tap.progress.set_total(stream.name, total)

    @property
    def catalog_forces_full_table(self) -> bool:
        """Whether the catalog asks for FULL_TABLE, in its entry (`replication_method`) or its
        metadata (`forced-replication-method`): the SDK takes the entry's first, and a
        discovered catalog's entry says INCREMENTAL, so an edit of the metadata alone counts."""
        forced = (self.replication_method, self.metadata.root.forced_replication_method)
        return "FULL_TABLE" in forced

    # Records ----------------------------------------------------------------------------

    @property
    @override
    def schema_version(self) -> int:
        return self.checker.version

    @override
    def grown_schema(self, schema: dict[str, t.Any]) -> dict[str, t.Any]:
        return self.checker.grown(schema)

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        """Checked records; the detail requests of the next ones already in flight.

        A list stream reads its whole list first, then emits it in replication-key order,
        advancing its bookmark as records are delivered (see `replication`).
        """
        children = [
            t.cast("PrefetchableChild", child)
            for child in self.child_streams
            if is_detail_stream(child) and (child.selected or child.has_selected_descendents)
        ]
        prefetcher = self.conversations_tap.detail_prefetcher
        if self.parent_stream_type is not None:
            yield from prefetcher.read_ahead(self, children, self.checked_records(context), context)
        elif self.ABORT_AT_RECORD_COUNT is not None:
            # `--test` (`meltano config test`): a record or so, as the first page gives them;
            # no scan of the whole list, and the bookmark stays where it is.
            yield from self.checked_records(context)
        else:
            yield from self.replicate(context, children)

    def replicate(
        self, context: Context | None, children: t.Sequence[PrefetchableChild]
    ) -> t.Iterator[dict[str, t.Any]]:
        """Scan the list, then hand its records on in replication-key order, the bookmark
        moving past each once it is written (and its children synced)."""
        progress = self.conversations_tap.progress
        prefetcher = self.conversations_tap.detail_prefetcher
        run = self.replication = ListReplication(self, context)
        try:
            # Progress counts the records kept while the list is read (the slow part of a
            # stream without details), then knows every total before any detail request.
            run.scan(on_kept=progress.records_counter(self.name))
            self.announce_total(len(run.snapshot))
            rows = prefetcher.read_ahead(self, children, run.rows(), context)
            for row in rows:
                run.current = row
                yield row
                run.delivered(row)
                if run.checkpoint_due():
                    self.checkpoint()
            run.finish()
        finally:
            run.close()
            self.replication = None
        partitions = self.partitions
        if not partitions or context == partitions[-1]:
            for stream in (self, *self.child_streams):
                progress.finish(stream.name)

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> t.Iterable[Context | None]:
        """Hand the record to child streams derived from it, then give the SDK its contexts.

        The SDK syncs a record's children right here, before it writes the record, and the
        record is still whole: catalog deselection only happens when it is written. So a
        `derived.DerivedStream` reads its parent's data from `record_for_children`, never
        from what the parent emits (which may lack a deselected field, or not exist at all
        when the parent is not selected).
        """
        self.record_for_children = record
        yield from super().generate_child_contexts(record, context)

    def checked_records(self, context: Context | None) -> t.Iterator[dict[str, t.Any]]:
        """The API's records (a child stream's, for one parent), checked and normalised."""
        progress = self.conversations_tap.progress
        for raw in self.request_records(context):
            row = self.checked_record(raw, context)
            if row is not None:
                progress.add(self.name, records=1)
                yield row

    def checked_record(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        """Check and normalise one record; `None` drops it."""
        return self.checker.check(row)

    @override
    def advance_bookmark(self, record: dict[str, t.Any], context: Context | None) -> None:
        """A child's bookmark is the newest value it delivered, and never moves backwards,
        nor past the run's start (less the clock margin), as a list stream's: a record stamped
        ahead of this machine's clock would make a bookmark the next run refuses.

        A list stream's bookmark moves in `get_records` instead, as records are delivered.
        """
        if self.parent_stream_type is None or not self.replication_key:
            return
        value = record.get(self.replication_key)
        state = self.get_context_state(context)
        old = state.get("replication_key_value")
        if (
            isinstance(value, str)
            and (not isinstance(old, str) or value > old)
            and value < self.bookmark_ceiling
        ):
            state["replication_key"] = self.replication_key
            state["replication_key_value"] = value

    def bookmark_states(self) -> t.Iterator[dict[str, t.Any]]:
        """This stream's entries in the state: the stream's own and its partitions'."""
        entry = (self.tap_state.get("bookmarks") or {}).get(self.name)
        if isinstance(entry, dict):
            yield entry
            for partition in entry.get("partitions") or []:
                if isinstance(partition, dict):
                    yield partition

    def reset_for_sync(self) -> None:
        """Forget per-run caches; the tap calls this before each sync."""
        self.bookmark_ceiling = bookmark_ceiling()
        self.reset_schema_sent()
        self.checker.reset()
        for state in self.bookmark_states():
            if self.drop_progress_markers(state):
                self.logger.info(
                    "%s: ignoring the unfinished-run progress markers in the state", prefix(self)
                )
            value = state.get("replication_key_value")
            if in_the_future(value):
                self.logger.warning(
                    "%s: the bookmark %s in the state lies in the future; ignoring it and "
                    "reading from start_date (or from the beginning)",
                    prefix(self),
                    value,
                )
                state.pop("replication_key_value", None)
                state.pop(SENT, None)


# Paging ------------------------------------------------------------------------------------


class PagingCheck:
    """Counts what a stream's pages delivered; the one place paging failures are raised."""

    def __init__(self, stream: ApiStream) -> None:
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

    def __init__(self, stream: ApiStream) -> None:
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

    def __init__(self, stream: ApiStream, page_size: t.Callable[[t.Any], int]) -> None:
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
