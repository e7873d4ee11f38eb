"""The stream base class `ApiStream`, for every endpoint (`detail.DetailStream` builds on it).

A provider module subclasses `ApiStream` once for its protocol (auth, paging, envelope) and then
once per endpoint, so each endpoint class is a few declarative lines next to its schema. What
the base classes use lives beside them: `transport` (session, auth cache, request gate, body
decoding), `paging`, `records` (schema checks), `prefetch` (concurrent details), `errors`.
"""

from __future__ import annotations

import typing as t
from http import HTTPStatus
from urllib.parse import quote, urlparse

import backoff
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from typing_extensions import override

from tap_conversations.errors import (
    CredentialsRejected,
    ProviderError,
    RecordVanished,
    TokenRejected,
    prefix,
)
from tap_conversations.paging import PageKeys
from tap_conversations.records import RecordChecker
from tap_conversations.replication import SENT, ListReplication, in_the_future
from tap_conversations.retrying import RetryPolicy, check_json_body
from tap_conversations.sdk_compat import CompatStream
from tap_conversations.settings import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REQUEST_TIMEOUT,
    redact_text,
)
from tap_conversations.transport import decoded_body

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.core import Stream
    from singer_sdk.tap_base import Tap

    from tap_conversations.prefetch import DetailPrefetcher, PrefetchableChild
    from tap_conversations.progress import Progress
    from tap_conversations.snapshot import ScanWatch
    from tap_conversations.transport import Authenticator, ProviderTransport


#: Records a list stream sends between two looks at the checkpoint clock.
CHECKPOINT_EVERY = 50


class ConversationsTap(t.Protocol):
    """What the streams need of the tap, beyond the SDK's `Tap`."""

    detail_prefetcher: DetailPrefetcher
    progress: Progress

    @property
    def streams(self) -> t.Mapping[str, Stream]: ...

    def provider_transport(self, provider: str) -> ProviderTransport: ...


def is_detail_stream(stream: Stream) -> bool:
    """Whether `stream` is fetched one request per parent record (a `detail.DetailStream`)."""
    return bool(getattr(stream, "fetched_per_parent", False))


class ApiStream(CompatStream):
    """Base class of every stream in this tap."""

    # `records.RecordChecker` checks every record's types before the SDK sees it, and the
    # values come straight from JSON, so the SDK's conformance pass has nothing left to do.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    #: Config object of the provider this stream belongs to, e.g. "perform_engage".
    provider: t.ClassVar[str]
    #: Human name of the provider, used in every message the user sees.
    provider_label: t.ClassVar[str]
    #: Config keys a 401/403 points the user at.
    credential_settings: t.ClassVar[tuple[str, ...]]
    #: Statuses that mean "your credentials were refused" for this API.
    credential_statuses: t.ClassVar[frozenset[int]] = frozenset({401, 403})
    #: Documented base URL, for providers that have one global host.
    default_api_url: t.ClassVar[str | None] = None
    #: Top-level fields turned into text before the record checks (ids the docs leave
    #: untyped, e.g. onQ's); see `records.RecordChecker`.
    text_fields: tuple[str, ...] = ()

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap=tap)
        self.conversations_tap = t.cast("ConversationsTap", tap)
        self.checker = RecordChecker(self)
        #: Set while a list stream scans its list (`replication`), for `parse_response`.
        self.scan_watch: ScanWatch | None = None
        #: The list stream's replication in progress, for its detail children to report to.
        self.replication: ListReplication | None = None
        #: The record whose children are being synced (see `generate_child_contexts`).
        self.record_for_children: dict[str, t.Any] | None = None

    # Provider plumbing -------------------------------------------------------------------

    @property
    def provider_config(self) -> t.Mapping[str, t.Any]:
        return t.cast("t.Mapping[str, t.Any]", self.config.get(self.provider) or {})

    @property
    @override
    def url_base(self) -> str:
        return str(self.provider_config.get("api_url") or self.default_api_url).rstrip("/")

    @property
    def transport(self) -> ProviderTransport:
        return self.conversations_tap.provider_transport(self.provider)

    @property
    @override
    def requests_session(self) -> requests.Session:
        return self.transport.session

    @property
    @override
    def authenticator(self) -> Authenticator:
        return self.transport.authenticator(self.create_authenticator)

    def create_authenticator(self) -> Authenticator:
        """Build the provider's authenticator; called once per provider and run."""
        raise NotImplementedError

    @override
    def get_url(self, context: Context | None) -> str:
        """Fill `{placeholders}` in `path` from the context, percent-encoding every character.

        The SDK only encodes `/`; ids here contain `:` (`580:972b...`), which must travel as
        `%3A`. Config values are deliberately not substituted: a secret never enters a URL.
        """
        url = self.url_base + (self.path or "")
        for key, value in (context or {}).items():
            url = url.replace(f"{{{key}}}", quote(str(value), safe=""))
        return url

    # Requests and retries ----------------------------------------------------------------

    @override
    def request_decorator(self, func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        """Every attempt passes the provider's request gate and `retrying.RetryPolicy`,
        plus one token renewal when the server rejects a token we believed valid."""
        policy = self.retry_policy()
        progress = self.conversations_tap.progress

        def attempt(prepared_request: requests.PreparedRequest, context: Context | None) -> t.Any:
            progress.add(self.name, requests=1)
            return func(prepared_request, context)

        prefetcher = self.conversations_tap.detail_prefetcher

        def send(prepared_request: requests.PreparedRequest, context: Context | None) -> t.Any:
            if (ahead := prefetcher.take_page(prepared_request.url)) is not None:
                return ahead.result()  # a list page sent ahead, retries and all (`prefetch`)
            try:
                return policy.call(prepared_request, lambda: attempt(prepared_request, context))
            except TokenRejected:
                renew = getattr(self.authenticator, "renew", None)
                if renew is None:
                    raise
                self.logger.info("%s rejected the token; renewing it once", self.provider_label)
                renew()
                try:
                    return policy.call(prepared_request, lambda: attempt(prepared_request, context))
                except TokenRejected as again:
                    raise CredentialsRejected(str(again)) from None

        return send

    def retry_policy(self, who: str | None = None) -> RetryPolicy:
        """How this stream's requests (and its provider's token requests) are retried."""
        progress = self.conversations_tap.progress
        return RetryPolicy(
            label=self.provider_label,
            who=who or prefix(self),
            provider=self.provider,
            api_url=self.url_base,
            gate=self.transport.gate,
            max_tries=self.backoff_max_tries(),
            timeout=self.timeout,
            max_retry_after=float(
                self.config.get("max_retry_after_seconds", DEFAULT_MAX_RETRY_AFTER)
            ),
            waits=self.retry_waits,
            logger=self.logger,
            on_retry=lambda: progress.add(self.name, retries=1),
            credential_settings=self.credential_settings,
        )

    def retry_waits(self) -> t.Iterator[float]:
        """Seconds to wait before each retry: the backoff generator's values, jittered."""
        waits = self.backoff_wait_generator()
        next(waits)  # backoff's generators yield a priming value first (backoff skips it too)
        for wait in waits:
            yield self.backoff_jitter(wait)

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config.get("request_timeout_seconds", DEFAULT_REQUEST_TIMEOUT))

    @override
    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", DEFAULT_MAX_RETRIES)) + 1

    @override
    def backoff_wait_generator(self) -> t.Generator[float, None, None]:
        # 0.5, 1, 2, 4 ... s (plus the SDK's jitter), never more than 30 s. A Retry-After the
        # server sent replaces this wait (`retrying.RetryPolicy.wait_after`).
        return backoff.expo(base=2, factor=0.5, max_value=30)

    # Responses --------------------------------------------------------------------------

    def describe(self, response: requests.Response) -> str:
        """`<provider> stream '<name>': HTTP <status> <reason> on <path>` for messages."""
        path = urlparse(response.url).path
        return f"{prefix(self)}: HTTP {response.status_code} {response.reason} on {path}"

    @override
    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status in self.credential_statuses:
            self.raise_for_credentials(response)
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            # `retrying.RetryPolicy` retries it, honouring any Retry-After.
            raise RetriableAPIError(self.describe(response), response)
        if status == HTTPStatus.NOT_FOUND and self.parent_stream_type is not None:
            raise RecordVanished(self.describe(response))
        if status >= HTTPStatus.BAD_REQUEST:
            raise ProviderError(
                f"{self.describe(response)} (query: {urlparse(response.url).query or 'none'}): "
                f"{redact_text(response.text)[:300]}"
            )
        try:
            check_json_body(response)  # not JSON, not UTF-8: `BadBody`, retried
        except RecursionError:
            # msgspec stops at ~1,000 levels; asking again would get the same body.
            msg = f"{self.describe(response)}: the JSON body nests too deeply to decode"
            raise ProviderError(msg) from None

    def raise_for_credentials(self, response: requests.Response) -> t.NoReturn:
        settings = ", ".join(f"{self.provider}.{name}" for name in self.credential_settings)
        message = f"{self.describe(response)} — check {self.provider} credentials ({settings})"
        if response.status_code == HTTPStatus.UNAUTHORIZED:
            raise TokenRejected(message)
        raise CredentialsRejected(message)

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        body = decoded_body(response)
        rows = list(self.records_in(body, response))
        if (watch := self.scan_watch) is not None:
            keys = PageKeys(rows, (self.primary_keys or ("id",))[0])
            position = self.page_position(response)
            overlap = watch.page(position, keys, self.total_in(body))
            rows = rows[overlap:]
            if position == 0:
                following = self.following_pages(body)
                self.conversations_tap.detail_prefetcher.pages_ahead(self, following, self.context)
        yield from rows

    def following_pages(self, body: t.Any) -> list[requests.PreparedRequest]:
        """The requests of the list pages after the first, when the first page tells them.

        They are sent ahead, concurrently, while the scan reads the pages in order.
        """
        return []

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

    # Records ----------------------------------------------------------------------------

    @property
    @override
    def nested_deselection(self) -> bool:
        return self.checker.selection.nested

    @property
    @override
    def deselected_fields(self) -> frozenset[str]:
        return self.checker.selection.deselected

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
            return
        rows = self.replicate(context, children)
        yield from t.cast("t.Iterator[dict[str, t.Any]]", rows)

    @override
    def encoded_records(self, context: Context | None) -> t.Iterator[bytes] | None:
        """A list stream's records as the snapshot holds them (JSON), to be written as they
        are when nothing needs them decoded (`sdk_compat.CompatStream._sync_records`)."""
        if self.parent_stream_type is not None:
            return None
        return t.cast("t.Iterator[bytes]", self.replicate(context, [], encoded=True))

    def replicate(
        self,
        context: Context | None,
        children: t.Sequence[PrefetchableChild],
        *,
        encoded: bool = False,
    ) -> t.Iterator[dict[str, t.Any] | bytes]:
        """Scan the list, then hand its records on in replication-key order (decoded, or
        `encoded` as JSON), the bookmark moving past each once it is written."""
        progress = self.conversations_tap.progress
        prefetcher = self.conversations_tap.detail_prefetcher
        run = self.replication = ListReplication(self, context)
        try:
            try:
                # Progress counts the records kept while the list is read (the slow part of a
                # stream without details), then knows every total before any detail request.
                run.scan(on_kept=progress.records_counter(self.name))
            finally:
                prefetcher.forget_pages()
            self.announce_total(len(run.snapshot))
            if encoded:
                for sent, (key, value, record_json) in enumerate(run.entries(), start=1):
                    yield record_json
                    run.delivered_key(key, value)
                    if sent % CHECKPOINT_EVERY == 0 and run.checkpoint_due():
                        self.checkpoint()
            else:
                rows = (
                    prefetcher.read_ahead(self, children, run.rows(), context)
                    if children
                    else run.rows()
                )
                for sent, row in enumerate(rows, start=1):
                    run.current = row
                    yield row
                    run.delivered(row)
                    if sent % CHECKPOINT_EVERY == 0 and run.checkpoint_due():
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
        """A child's bookmark is the newest value it delivered, and never moves backwards.

        A list stream's bookmark moves in `get_records` instead, as records are delivered.
        """
        if self.parent_stream_type is None or not self.replication_key:
            return
        value = record.get(self.replication_key)
        state = self.get_context_state(context)
        old = state.get("replication_key_value")
        if isinstance(value, str) and (not isinstance(old, str) or value > old):
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
