"""`ProviderStream`: a stream of one provider's API, before any record is read.

Its config object and base URL, the provider's session and authenticator (`transport`, once per
provider and run), how each request is retried (`transport.RetryPolicy`, one token renewal), and
how an answer is judged (credentials refused, retried, vanished, or a one-line error).
`client.ApiStream` builds on it with what is done with the records.
"""

from __future__ import annotations

import typing as t
from http import HTTPStatus
from urllib.parse import quote, urlparse

import backoff
import msgspec
import requests
from singer_sdk.exceptions import RetriableAPIError
from typing_extensions import override

from tap_conversations.errors import (
    BadBody,
    CredentialsRejected,
    ProviderError,
    RecordVanished,
    TokenRejected,
    prefix,
)
from tap_conversations.sdk_compat import CompatStream
from tap_conversations.settings import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REQUEST_TIMEOUT,
    redact_text,
)
from tap_conversations.transport import RetryPolicy, decoded_body

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context
    from singer_sdk.streams.core import Stream
    from singer_sdk.tap_base import Tap

    from tap_conversations.prefetch import DetailPrefetcher
    from tap_conversations.progress import Progress
    from tap_conversations.transport import Authenticator, ProviderTransport


def check_json_body(response: requests.Response) -> None:
    """Raise `BadBody` (retried) unless the body decodes as JSON; the decoded body is kept."""
    try:
        decoded_body(response)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        content_type = response.headers.get("Content-Type") or "none"
        problem = "is not UTF-8" if isinstance(error, UnicodeDecodeError) else "is not JSON"
        reason = (
            f"answered HTTP {response.status_code} {response.reason} with a body that "
            f"{problem} (content type {content_type[:80]}, {len(response.content)} bytes)"
        )
        raise BadBody(reason, response) from None


class ConversationsTap(t.Protocol):
    """What the streams need of the tap, beyond the SDK's `Tap`."""

    detail_prefetcher: DetailPrefetcher
    progress: Progress

    @property
    def streams(self) -> t.Mapping[str, Stream]: ...

    def provider_transport(self, provider: str) -> ProviderTransport: ...


class ProviderStream(CompatStream):
    """A stream of one provider's API: config, session, auth, retries, answers judged."""

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

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap=tap)
        self.conversations_tap = t.cast("ConversationsTap", tap)
        self._retry_policy: RetryPolicy | None = None

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

    def send_first_page(self) -> requests.Response:
        """The first page's request, sent once without the sync's retries: discovery and the
        connection check answer quickly when the API is down."""
        request = requests.Request(
            "GET",
            self.get_url(None),
            params=self.get_url_params(None, None),
            headers=self.http_headers,
            auth=self.authenticator,
        )
        session = self.requests_session
        return session.send(session.prepare_request(request), timeout=self.timeout)

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
        """Every attempt passes the provider's request gate and `transport.RetryPolicy`,
        plus one token renewal when the server rejects a token we believed valid.

        The SDK asks for this at every `request_records`, i.e. once per detail: the policy is
        built once per transport (a run's) and kept.
        """
        policy = self._retry_policy
        if policy is None or policy.gate is not self.transport.gate:
            policy = self._retry_policy = self.retry_policy()
        progress = self.conversations_tap.progress
        progress.watch(self.provider_label, self.transport.gate)

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
                renew(prepared_request)  # one renewal serves every worker it rejected
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
        # server sent replaces this wait (`transport.RetryPolicy.wait_after`).
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
            # `transport.RetryPolicy` retries it, honouring any Retry-After.
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
