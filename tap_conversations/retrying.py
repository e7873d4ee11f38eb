"""One retry policy for every request of the tap, token requests included.

`RetryPolicy.call` sends a request until it succeeds, fails for good, or runs out of attempts:

- Retried: 5xx, 429, a timeout, a refused or dropped connection, a body cut short, a success
  whose body is not JSON (`errors.BadBody`). Waits grow exponentially with jitter (the
  stream's `backoff_wait_generator` and `backoff_jitter`), or follow the server's
  `Retry-After`, which then holds every request of the provider (`transport.RequestGate`).
- A `Retry-After` longer than `max_retry_after_seconds` ends the run with one line instead of
  a silent wait; an unusable one (`inf`, `nan`, garbage) is ignored and said so.
- Each retry is one readable INFO line, e.g. `Perform & Engage 365: GET /conversations/
  answered HTTP 503 Service Unavailable, retrying in 1.4 s (attempt 2 of 6)`; giving up is
  one `ProviderError` line naming the cause (host and port, refused / not resolved / TLS, the
  timeout setting) and the setting to check.
- Waits end at once on a termination signal (`errors.Interrupted`).

This replaces the SDK's `backoff.on_exception` decorator, whose handler logs every retry twice,
once at ERROR, with the wrapped function's repr, and whose sleeps cannot be interrupted.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_conversations.errors import BadBody, ProviderError
from tap_conversations.transport import decoded_body, retry_after_seconds

if t.TYPE_CHECKING:
    import logging

    from tap_conversations.transport import RequestGate

RETRIABLE: tuple[type[BaseException], ...] = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def duration(seconds: float) -> str:
    """`1.4 s`, `45 s`, `3600 s (60 min)`: a wait as a person reads it."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    text = f"{seconds:.0f} s"
    return f"{text} ({seconds / 60:.0f} min)" if seconds >= 120 else text


def host_and_port(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.hostname}:{port}"


def _causes(error: BaseException) -> t.Iterator[BaseException]:
    """The error and every error it wraps (cause, context, urllib3 `reason`, args)."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += list(current.args)
        todo += [e for e in linked if isinstance(e, BaseException)]


def connection_problem(error: BaseException) -> str:
    """Why a connection failed, in words: refused, name not resolved, TLS, closed."""
    causes = list(_causes(error))
    ssl_errors = [e for e in causes if isinstance(e, ssl.SSLError)]
    if ssl_errors or any(isinstance(e, requests.exceptions.SSLError) for e in causes):
        detail = (getattr(ssl_errors[0], "reason", None) if ssl_errors else None) or "failed"
        return f"TLS error: {detail}"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "connection refused"
    names = ("NameResolutionError",)
    if any(isinstance(e, socket.gaierror) or type(e).__name__ in names for e in causes):
        return "host name not resolved"
    if any(
        isinstance(e, ConnectionResetError | http.client.RemoteDisconnected | BrokenPipeError)
        for e in causes
    ):
        return "connection closed by the server"
    if any(isinstance(e, TimeoutError) for e in causes):
        return "timed out"
    return "connection failed"


def check_json_body(
    response: requests.Response, typed: msgspec.json.Decoder[t.Any] | None = None
) -> None:
    """Raise `BadBody` (retried) unless the body decodes as JSON; the decoded body is kept
    (decoded with `typed` first, if given: see `transport.decoded_body`)."""
    try:
        decoded_body(response, typed)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        content_type = response.headers.get("Content-Type") or "none"
        problem = "is not UTF-8" if isinstance(error, UnicodeDecodeError) else "is not JSON"
        reason = (
            f"answered HTTP {response.status_code} {response.reason} with a body that "
            f"{problem} (content type {content_type[:80]}, {len(response.content)} bytes)"
        )
        raise BadBody(reason, response) from None


@dataclass
class RetryPolicy:
    """How one provider's requests are retried; built by the stream that sends them."""

    label: str  # provider label: "Perform & Engage 365"
    who: str  # how a give-up line starts: "Perform & Engage 365 stream 'x'"
    provider: str  # config key, for setting names: "perform_engage"
    api_url: str  # paths in retry lines are relative to it
    gate: RequestGate
    max_tries: int
    timeout: float
    max_retry_after: float
    waits: t.Callable[[], t.Iterator[float]]
    logger: logging.Logger
    on_retry: t.Callable[[], None]
    credential_settings: tuple[str, ...] = ()

    def call(
        self, request: requests.PreparedRequest, send: t.Callable[[], requests.Response]
    ) -> requests.Response:
        """`send()` until it answers, retrying what is transient; see the module doc."""
        waits = self.waits()
        attempt = 0
        while True:
            attempt += 1
            self.gate.wait_turn()
            try:
                return send()
            except RETRIABLE as error:
                if attempt >= self.max_tries:
                    raise self.gave_up(request, error, attempt) from None
                wait, note = self.wait_after(request, error, next(waits))
                self.logger.info(
                    "%s: %s %s %s, retrying in %s%s (attempt %d of %d)",
                    self.label,
                    request.method,
                    self.relative_path(request.url),
                    self.what_failed(request, error),
                    duration(wait),
                    note,
                    attempt + 1,
                    self.max_tries,
                )
                self.on_retry()
                self.gate.sleep(wait)
            except ValueError as error:
                if "header" not in str(error).lower():
                    raise
                raise self.invalid_header(request) from None

    def wait_after(
        self, request: requests.PreparedRequest, error: BaseException, backoff_wait: float
    ) -> tuple[float, str]:
        """How long to wait before the next attempt, and what to say about it."""
        response = getattr(error, "response", None)
        header = response.headers.get("Retry-After") if response is not None else None
        if header is None:
            return backoff_wait, ""
        seconds = retry_after_seconds(header)
        if seconds is None:
            return backoff_wait, f" (its Retry-After {header[:40]!r} is not usable, ignored)"
        if seconds > self.max_retry_after:
            msg = (
                f"{self.who}: {request.method} {self.relative_path(request.url)} "
                f"{self.what_failed(request, error)} and asks to wait {duration(seconds)} "
                f"(Retry-After), longer than max_retry_after_seconds "
                f"({self.max_retry_after:g} s); raise that setting to wait, or run later"
            )
            raise ProviderError(msg)
        # Every worker of this provider waits, not just the one that was told.
        self.gate.pause(seconds)
        return seconds, f" as its Retry-After asks (every {self.label} request waits)"

    def what_failed(  # noqa: PLR0911 - one return per kind of failure
        self, request: requests.PreparedRequest, error: BaseException
    ) -> str:
        """`answered HTTP 503 ...`, `could not connect to host:port (connection refused)` ..."""
        if isinstance(error, BadBody):
            return error.reason
        response = getattr(error, "response", None)
        if isinstance(error, RetriableAPIError) and response is not None:
            return f"answered HTTP {response.status_code} {response.reason}"
        where = host_and_port(request.url or "")
        limit = f"request_timeout_seconds ({self.timeout:g} s)"
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return f"could not connect to {where} within {limit}"
        if isinstance(error, requests.exceptions.Timeout):
            return f"got no complete answer from {where} within {limit}"
        if isinstance(
            error,
            requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError,
        ):
            return f"sent an answer that was cut short or garbled ({where})"
        if isinstance(error, requests.exceptions.ConnectionError | ConnectionResetError):
            return f"could not reach {where} ({connection_problem(error)})"
        return f"failed ({type(error).__name__})"

    def gave_up(
        self, request: requests.PreparedRequest, error: BaseException, attempts: int
    ) -> ProviderError:
        """One line for a request that still failed after every attempt."""
        response = getattr(error, "response", None)
        if (
            isinstance(error, RetriableAPIError)
            and not isinstance(error, BadBody)
            and response is not None
        ):
            last = f"last answer HTTP {response.status_code} {response.reason}"
        else:
            last = f"last error: {self.what_failed(request, error)}"
        hint = ""
        if isinstance(error, requests.exceptions.Timeout):
            hint = " — raise request_timeout_seconds if the server is only slow"
        elif isinstance(error, requests.exceptions.ConnectionError | ConnectionResetError):
            hint = f" — check {self.provider}.api_url"
        path = urlsplit(request.url or "").path
        return ProviderError(
            f"{self.who}: gave up on {path} after {attempts} attempts ({last}){hint}"
        )

    def invalid_header(self, request: requests.PreparedRequest) -> ProviderError:
        settings = ", ".join(f"{self.provider}.{name}" for name in self.credential_settings)
        msg = (
            f"{self.who}: {request.method} {self.relative_path(request.url)} could not be sent: "
            f"a header value is invalid (a line break or control character); check {settings}"
        )
        return ProviderError(msg)

    def relative_path(self, url: str | None) -> str:
        path = urlsplit(url or "").path
        base = urlsplit(self.api_url).path.rstrip("/")
        if base and path.startswith(base + "/"):
            return path[len(base) :]
        return path or "/"
