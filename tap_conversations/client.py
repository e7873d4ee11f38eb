"""What every stream of every provider shares.

One base class, `ApiStream`, owns the request URL, the pooled HTTP session and the
authenticator of its provider, response decoding, error messages and timestamp handling. A
provider module subclasses it once for its protocol (auth, paging, envelope) and then once per
endpoint, so each endpoint class is a few declarative lines next to its schema.
"""

from __future__ import annotations

import datetime
import email.utils
import threading
import typing as t
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import quote, urlparse

import backoff
import msgspec
import requests
from requests.adapters import HTTPAdapter
from singer_sdk import RESTStream
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.pagination import PageNumberPaginator
from singer_sdk.singerlib import RecordMessage
from typing_extensions import override

from tap_conversations.concurrency import RequestGate
from tap_conversations.settings import DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT

#: What the SDK retries; once retries are exhausted these become one `ProviderError`.
RETRIABLE_ERRORS = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)

if t.TYPE_CHECKING:
    from singer_sdk import typing as th
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator
    from singer_sdk.tap_base import Tap

    from tap_conversations.concurrency import DetailPrefetcher
    from tap_conversations.progress import Progress


class ProviderError(FatalAPIError):
    """A failure the user has to act on; its message is one line that says what to fix."""


class CredentialsRejected(ProviderError):
    """The API answered 401/403 to our credentials."""


class RecordVanished(ProviderError):
    """A detail endpoint answered 404 for an id its list endpoint had just returned."""


class Authenticator(t.Protocol):
    """A requests auth callable. One holding a token also has `renew()`, which the streams
    call once when the server rejects a token we believed valid."""

    def __call__(self, request: requests.PreparedRequest, /) -> requests.PreparedRequest: ...


class TokenRejected(CredentialsRejected):
    """A 401 to a token we believed valid: renew it once and try again before giving up."""


@dataclass
class ProviderResources:
    """What all streams of one provider share during a run.

    One pooled HTTP session (keep-alive connections are reused across list and detail
    endpoints) and one authenticator (a token obtained once serves every stream).
    """

    pool_size: int = 10
    max_requests_per_second: float | None = None
    session: requests.Session = field(init=False)
    gate: RequestGate = field(init=False)
    _authenticator: Authenticator | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.gate = RequestGate(self.max_requests_per_second)

    def authenticator(self, create: t.Callable[[], Authenticator]) -> Authenticator:
        with self._lock:
            if self._authenticator is None:
                self._authenticator = create()
            return self._authenticator

    def close(self) -> None:
        self.session.close()


class TapServices(t.Protocol):
    """What the tap offers its streams beyond the SDK's `Tap`."""

    detail_prefetcher: DetailPrefetcher
    progress: Progress

    def provider_resources(self, provider: str) -> ProviderResources: ...


@dataclass(frozen=True)
class Provider:
    """One vendor API: its config object and the streams it enables."""

    key: str  # the config object's name, e.g. "perform_engage"
    label: str  # the name used in messages, e.g. "Perform & Engage 365"
    settings: th.ObjectType
    description: str
    streams: tuple[type[ApiStream], ...]


_DECODED_BODY = "_tap_conversations_body"


def decoded_body(response: requests.Response) -> t.Any:
    """The response's JSON body, decoded once in `validate_response` and cached on it."""
    if not hasattr(response, _DECODED_BODY):
        setattr(response, _DECODED_BODY, msgspec.json.decode(response.content))
    return getattr(response, _DECODED_BODY)


def retry_after_seconds(response: requests.Response) -> float | None:
    """`Retry-After` as seconds from now; it may be a number of seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def utc_timestamp(value: str) -> str:
    """Normalise an ISO-8601 timestamp to UTC with a fixed layout.

    The APIs mix offsets (`+01:00`, `Z`) and precisions. One layout,
    `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, makes string order equal time order, which is what the
    SDK relies on when it compares bookmark values. The instant itself is unchanged.
    """
    parsed = datetime.datetime.fromisoformat(value)  # validates, whatever the path below
    utc_suffix = value[-1] == "Z" or value.endswith("+00:00")
    if utc_suffix and len(value) >= 20 and value[10] == "T":
        # Already UTC (the common case): rebuild the text instead of formatting a datetime,
        # three times cheaper on the hot path.
        body = value[:-1] if value[-1] == "Z" else value[:-6]
        if len(body) == 19 or (body[19] == "." and 20 < len(body) <= 26 and body[20:].isdigit()):
            return f"{body[:19]}.{body[20:].ljust(6, '0')}+00:00"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC).isoformat(timespec="microseconds")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class _Selection:
    deselected: frozenset[str]  # top-level properties the catalog deselected
    nested: bool  # whether any nested property is deselected


def _python_types(prop: dict[str, t.Any]) -> frozenset[type]:
    """The Python types a decoded JSON value may have for a schema property."""
    declared = prop.get("type", [])
    names = [declared] if isinstance(declared, str) else declared
    return frozenset(kind for name in names for kind in _JSON_TYPES.get(name, ()))


class ApiStream(RESTStream[t.Any]):
    """Base class of every stream in this tap."""

    # Records are checked against the schema's top-level types in `check_fields`, and the
    # values come straight from JSON, so the SDK's per-record conformance pass (about half of
    # the tap's CPU, measured) has nothing left to do.
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
        self._timestamp_fields = tuple(
            name
            for name, prop in self.schema["properties"].items()
            if prop.get("format") == "date-time"
        )
        self._field_types = {
            name: _python_types(prop) for name, prop in self.schema["properties"].items()
        }
        self._unknown_reported: set[str] = set()
        self._selection_cache: _Selection | None = None
        self._bookmarks: dict[tuple[tuple[str, t.Any], ...], str | None] = {}
        self._schema_sent = False

    # Provider plumbing -------------------------------------------------------------------

    @property
    def provider_config(self) -> t.Mapping[str, t.Any]:
        return t.cast("t.Mapping[str, t.Any]", self.config.get(self.provider) or {})

    @property
    @override
    def url_base(self) -> str:
        return str(self.provider_config.get("api_url") or self.default_api_url).rstrip("/")

    @property
    def shared(self) -> ProviderResources:
        return self.services.provider_resources(self.provider)

    @property
    def services(self) -> TapServices:
        return t.cast("TapServices", self._tap)

    @property
    @override
    def requests_session(self) -> requests.Session:
        return self.shared.session

    @property
    @override
    def authenticator(self) -> Authenticator:
        return self.shared.authenticator(self.create_authenticator)

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

    @override
    def request_decorator(self, func: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        """The SDK's retry policy, with every attempt passing the provider's request gate,
        plus one token renewal when the server rejects a token we believed valid."""
        gate = self.shared.gate
        progress = self.services.progress

        def gated(prepared_request: requests.PreparedRequest, context: Context | None) -> t.Any:
            gate.wait_turn()
            progress.add(self.name, requests=1)
            return func(prepared_request, context)

        retrying = super().request_decorator(gated)

        def with_retries(
            prepared_request: requests.PreparedRequest, context: Context | None
        ) -> t.Any:
            try:
                return retrying(prepared_request, context)
            except RETRIABLE_ERRORS as error:
                raise self.gave_up(prepared_request, error) from None

        def send(prepared_request: requests.PreparedRequest, context: Context | None) -> t.Any:
            try:
                return with_retries(prepared_request, context)
            except TokenRejected:
                renew = getattr(self.authenticator, "renew", None)
                if renew is None:
                    raise
                self.logger.info("%s rejected the token; renewing it once", self.provider_label)
                renew()
                try:
                    return with_retries(prepared_request, context)
                except TokenRejected as again:
                    raise CredentialsRejected(str(again)) from None

        return send

    def gave_up(self, request: requests.PreparedRequest, error: Exception) -> ProviderError:
        """One line for a request that still failed after every retry."""
        response = getattr(error, "response", None)
        if isinstance(error, RetriableAPIError) and response is not None:
            what = f"last answer HTTP {response.status_code} {response.reason}"
        else:
            what = f"last error {type(error).__name__}"
        path = urlparse(request.url or "").path
        msg = (
            f"{self.provider_label} stream '{self.name}': gave up on {path} after "
            f"{self.backoff_max_tries()} attempts ({what})"
        )
        return ProviderError(msg)

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config.get("request_timeout_seconds", DEFAULT_REQUEST_TIMEOUT))

    @override
    def backoff_handler(self, details: t.Any) -> None:
        self.services.progress.add(self.name, retries=1)
        super().backoff_handler(details)

    def announce_total(self, total: int) -> None:
        """The API said how many records this stream (and so each detail child) will have."""
        for stream in (self, *(c for c in self.child_streams if isinstance(c, DetailStream))):
            self.services.progress.set_total(stream.name, total)

    @override
    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", DEFAULT_MAX_RETRIES)) + 1

    @override
    def backoff_wait_generator(self) -> t.Generator[float, None, None]:
        # 0.5, 1, 2, 4 ... s (plus the SDK's jitter), never more than 30 s. A Retry-After the
        # server sent is honoured on top of this by the provider's request gate.
        return backoff.expo(base=2, factor=0.5, max_value=30)

    # Responses --------------------------------------------------------------------------

    def describe(self, response: requests.Response) -> str:
        """`<provider> stream <name>: <status> <reason> on <path>` for error messages."""
        path = urlparse(response.url).path
        return (
            f"{self.provider_label} stream '{self.name}': "
            f"HTTP {response.status_code} {response.reason} on {path}"
        )

    @override
    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status in self.credential_statuses:
            self.raise_for_credentials(response)
        if status == HTTPStatus.TOO_MANY_REQUESTS or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            if (pause := retry_after_seconds(response)) is not None:
                # Every worker of this provider waits, not just the one that was told.
                self.shared.gate.pause(pause)
            raise RetriableAPIError(self.describe(response), response)
        if status == HTTPStatus.NOT_FOUND and self.parent_stream_type is not None:
            raise RecordVanished(self.describe(response))
        if status >= HTTPStatus.BAD_REQUEST:
            raise ProviderError(
                f"{self.describe(response)} (query: {urlparse(response.url).query or 'none'}): "
                f"{response.text[:300]}"
            )
        try:
            decoded_body(response)
        except msgspec.DecodeError:
            # A 200 whose body is cut short or not JSON is a transient fault: ask again.
            msg = f"{self.describe(response)}: the body is not valid JSON"
            raise RetriableAPIError(msg, response) from None

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
        return self.one_record(body, response)

    def total_in(self, body: t.Any) -> int | None:
        """The total record count the API announces in a page body, if it does."""
        return None

    def one_record(self, body: t.Any, response: requests.Response) -> list[dict[str, t.Any]]:
        if not isinstance(body, dict):
            msg = f"{self.describe(response)}: expected a JSON object, got {type(body).__name__}"
            raise ProviderError(msg)
        return [body]

    # Records ----------------------------------------------------------------------------

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        """Prepared records; the detail requests of the next ones already in flight."""
        yield from self.services.detail_prefetcher.read_ahead(
            self, self.prepared_records(context), context
        )
        if self.parent_stream_type is None:
            for stream in (self, *self.child_streams):
                self.services.progress.finish(stream.name)

    def prepared_records(self, context: Context | None) -> t.Iterator[dict[str, t.Any]]:
        """The API's records, normalised, without those older than the bookmark.

        Filtering here rather than in `post_process` means a dropped record never costs a
        detail request, prefetched or not.
        """
        progress = self.services.progress
        try:
            for raw in self.request_records(context):
                row = self.prepare(raw, context)
                if row is not None:
                    progress.add(self.name, records=1)
                    yield row
        except RecordVanished as gone:
            self.logger.warning("%s — skipped: deleted since its parent was listed", gone)

    def prepare(
        self,
        row: dict[str, t.Any],
        context: Context | None = None,
    ) -> dict[str, t.Any] | None:
        """Check and normalise one record; `None` drops it (older than the bookmark)."""
        self.check_fields(row)
        for name in self._timestamp_fields:
            value = row.get(name)
            if value is not None:
                row[name] = self.normalise_timestamp(value, name, row)
        if self.replication_key and self.filters_by_bookmark:
            bookmark = self.bookmark(context)
            value = row.get(self.replication_key)
            if bookmark is not None and value is not None and value < bookmark:
                return None
        return row

    def check_fields(self, row: dict[str, t.Any]) -> None:
        """Schema drift, checked here once so the SDK need not conform every record.

        A field the API added is dropped and reported once per stream (add it to the schema
        to keep it); a top-level field of the wrong JSON type is an error naming the stream,
        field and record.
        """
        if unknown := row.keys() - self._field_types.keys():
            if new := unknown - self._unknown_reported:
                self._unknown_reported |= new
                self.logger.warning(
                    "%s stream '%s': the API sent fields not in the schema, dropped: %s",
                    self.provider_label,
                    self.name,
                    ", ".join(sorted(new)),
                )
            for name in unknown:
                del row[name]
        for name in self._selection.deselected:
            row.pop(name, None)
        field_types = self._field_types
        for name, value in row.items():
            if type(value) not in field_types[name]:
                key = ", ".join(f"{k}={row.get(k)!r}" for k in self.primary_keys)
                expected = "/".join(sorted(t.__name__ for t in self._field_types[name]))
                msg = (
                    f"{self.provider_label} stream '{self.name}': field '{name}' of record "
                    f"{key} is {type(value).__name__} {value!r:.60}, expected {expected}"
                )
                raise ProviderError(msg)

    @property
    def _selection(self) -> _Selection:
        """Which properties the catalog deselected, worked out once per run."""
        if self._selection_cache is None:
            deselected = {
                name
                for name in self.schema["properties"]
                if not self.mask.get(("properties", name), True)
            }
            nested = any(len(crumb) > 2 and not selected for crumb, selected in self.mask.items())
            self._selection_cache = _Selection(frozenset(deselected), nested)
        return self._selection_cache

    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> t.Generator[RecordMessage, None, None]:
        # The SDK's version walks the selection mask for every property of every record
        # (measured: a quarter of the tap's CPU on 50,000 onQ records) and conforms types,
        # which `check_fields` has made unnecessary. Here deselected top-level properties are
        # already gone (`check_fields`), and the walk runs only if a nested one is deselected.
        if self._selection.nested:
            pop_deselected_record_properties(record, self.schema, self.mask)
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=utc_now(),
                )

    def normalise_timestamp(self, value: t.Any, name: str, row: dict[str, t.Any]) -> str:
        try:
            return utc_timestamp(value)
        except (TypeError, ValueError):
            key = ", ".join(f"{k}={row.get(k)!r}" for k in self.primary_keys)
            msg = (
                f"{self.provider_label} stream '{self.name}': field '{name}' of record {key} "
                f"is not an ISO-8601 timestamp: {value!r}"
            )
            raise ProviderError(msg) from None

    def bookmark(self, context: Context | None) -> str | None:
        """Where this run starts: max(bookmark from state, `start_date`), in record layout.

        Records at exactly this value are kept (re-emitted); targets upsert on the key.
        """
        cache_key = tuple(sorted((context or {}).items()))
        if cache_key not in self._bookmarks:
            start = self.get_starting_timestamp(context)
            self._bookmarks[cache_key] = utc_timestamp(start.isoformat()) if start else None
        return self._bookmarks[cache_key]

    # Output -----------------------------------------------------------------------------

    @override
    def _write_schema_message(self) -> None:
        # The SDK writes a child stream's SCHEMA once per parent record (each parent starts a
        # child sync). One per stream and run is all a target needs; the rest is noise that
        # grows with the account. Overridden here, once, for every stream.
        if not self._schema_sent:
            super()._write_schema_message()
            self._schema_sent = True

    def reset_for_sync(self) -> None:
        """Forget per-run caches; the tap calls this before each `sync_all`."""
        self._schema_sent = False
        self._bookmarks.clear()
        self._selection_cache = None


class PageNumberUntilShortPaginator(PageNumberPaginator):
    """1-based page numbers, ending on an empty or short page, or once `total` were read.

    The SDK's page-number paginator only stops on an empty page, which costs one extra
    request per stream; the API's own signals (a short page, a total) end paging here. A
    server that repeats a page, or whose total disagrees with what it delivered, ends the
    stream with an error rather than a loop or a silent gap.
    """

    def __init__(self, stream: ApiStream, page_size: t.Callable[[t.Any], int]) -> None:
        super().__init__(start_value=1)
        self._stream = stream
        self._page_size = page_size
        self._previous_first: t.Any = None
        self.records_read = 0

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        return True  # let `has_more` see the empty page, to compare it with the total

    @override
    def has_more(self, response: requests.Response) -> bool:
        body = decoded_body(response)
        page = list(self._stream.records_in(body, response))
        self.records_read += len(page)
        first = tuple(page[0].get(k) for k in self._stream.primary_keys) if page else None
        if first is not None and first == self._previous_first:
            self._fail(f"page {self.current_value} repeats the previous page")
        self._previous_first = first
        total = self._stream.total_in(body)
        more = bool(page) and len(page) >= self._page_size(body)
        if total is not None:
            if self.records_read > total or (not more and self.records_read < total):
                self._fail(f"it announced {total} records but delivered {self.records_read}")
            more = self.records_read < total
        return more

    def _fail(self, problem: str) -> t.NoReturn:
        stream = self._stream
        msg = f"{stream.provider_label} stream '{stream.name}': paging stopped because {problem}"
        raise ProviderError(msg)


class DetailStream(ApiStream):
    """One GET per parent record, returning a single object.

    State is one stream-level bookmark, not one partition per parent (the SDK's default would
    make every STATE message grow with the account). The parent only hands over records that
    are new or changed, so the child does not filter on its own bookmark.
    """

    state_partitioning_keys: t.ClassVar[list[str]] = []
    filters_by_bookmark = False
    #: Its requests may be sent ahead, concurrently (see `concurrency.DetailPrefetcher`).
    prefetchable = True

    @override
    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        prefetched = self.services.detail_prefetcher.take(self, context)
        if prefetched is None:
            return self.prepared_records(context)
        return prefetched.result()

    def fetch_records(self, context: Context | None) -> list[dict[str, t.Any]]:
        """All records for one parent, as a worker thread fetches them."""
        return list(self.prepared_records(context))

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        return None

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        return {}

    @override
    def records_in(self, body: t.Any, response: requests.Response) -> t.Iterable[dict[str, t.Any]]:
        return self.one_record(body, response)
