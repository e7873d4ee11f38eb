"""The stream base classes: `ApiStream` for every endpoint, `DetailStream` for one-object GETs.

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
from tap_conversations.records import RecordChecker, utc_timestamp
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
    from singer_sdk.pagination import BaseAPIPaginator
    from singer_sdk.streams.core import Stream
    from singer_sdk.tap_base import Tap

    from tap_conversations.prefetch import DetailPrefetcher
    from tap_conversations.progress import Progress
    from tap_conversations.transport import Authenticator, ProviderTransport


class ConversationsTap(t.Protocol):
    """What the streams need of the tap, beyond the SDK's `Tap`."""

    detail_prefetcher: DetailPrefetcher
    progress: Progress

    @property
    def streams(self) -> t.Mapping[str, Stream]: ...

    def provider_transport(self, provider: str) -> ProviderTransport: ...


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
    #: Whether the stream drops records older than its bookmark. Child streams leave this to
    #: their parent, which only hands them parents that are new or changed.
    filters_by_bookmark: t.ClassVar[bool] = True

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap=tap)
        self.conversations_tap = t.cast("ConversationsTap", tap)
        self.checker = RecordChecker(self)
        self._bookmarks: dict[tuple[tuple[str, t.Any], ...], str | None] = {}
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

        def send(prepared_request: requests.PreparedRequest, context: Context | None) -> t.Any:
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
        yield from self.records_in(decoded_body(response), response)

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
        for stream in (self, *(c for c in self.child_streams if isinstance(c, DetailStream))):
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
        """Checked records; the detail requests of the next ones already in flight."""
        children = [
            child
            for child in self.child_streams
            if isinstance(child, DetailStream)
            and (child.selected or child.has_selected_descendents)
        ]
        yield from self.conversations_tap.detail_prefetcher.read_ahead(
            self, children, self.checked_records(context), context
        )
        partitions = self.partitions
        last_partition = not partitions or context == partitions[-1]
        if self.parent_stream_type is None and last_partition:
            for stream in (self, *self.child_streams):
                self.conversations_tap.progress.finish(stream.name)

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
        """The API's records, checked and normalised, without those older than the bookmark.

        Filtering here rather than in `post_process` means a dropped record never costs a
        detail request, prefetched or not.
        """
        progress = self.conversations_tap.progress
        try:
            for raw in self.request_records(context):
                row = self.checked_record(raw, context)
                if row is not None:
                    progress.add(self.name, records=1)
                    yield row
        except RecordVanished as gone:
            self.logger.warning("%s — skipped: deleted since its parent was listed", gone)

    def checked_record(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        """Check and normalise one record; `None` drops it (older than the bookmark)."""
        row = self.checker.check(row)
        if self.replication_key and self.filters_by_bookmark:
            bookmark = self.bookmark(context)
            value = row.get(self.replication_key)
            if bookmark is not None and value is not None and value < bookmark:
                return None
        return row

    def bookmark(self, context: Context | None) -> str | None:
        """Where this run starts: max(bookmark from state, `start_date`), in record layout.

        Records at exactly this value are kept (re-emitted); targets upsert on the key.
        """
        cache_key = tuple(sorted((context or {}).items()))
        if cache_key not in self._bookmarks:
            start = self.get_starting_timestamp(context)
            self._bookmarks[cache_key] = utc_timestamp(start.isoformat()) if start else None
        return self._bookmarks[cache_key]

    def reset_for_sync(self) -> None:
        """Forget per-run caches; the tap calls this before each sync."""
        self.reset_schema_sent()
        self.checker.reset()
        self._bookmarks.clear()


class DetailStream(ApiStream):
    """One GET per parent record, returning a single object.

    State is one stream-level bookmark, not one partition per parent (the SDK's default would
    make every STATE message grow with the account). The parent only hands over records that
    are new or changed, so the child does not filter on its own bookmark. Its requests may be
    sent ahead, concurrently, by `prefetch.DetailPrefetcher`.
    """

    state_partitioning_keys: t.ClassVar[list[str]] = []
    filters_by_bookmark = False

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        prefetched = self.conversations_tap.detail_prefetcher.take(self, context)
        if prefetched is None:
            return self.fetch_records(context)
        return prefetched.result()

    def fetch_records(self, context: Context | None) -> list[dict[str, t.Any]]:
        """All records for one parent (on a worker thread when prefetched)."""
        return list(self.checked_records(context))

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        return None

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        return {}
