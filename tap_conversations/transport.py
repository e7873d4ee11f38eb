"""HTTP in one place: each provider's session, authenticator, request gate and retry policy.

`ProviderTransport` holds, per provider and run, one pooled `GuardedSession` (shared by every
stream and worker thread), one authenticator (a token obtained once serves them all) and one
`gate.RequestGate` (the rate limit found, Retry-After pauses, the rate cap, an end on
`stopping`).
`RetryPolicy` retries what is transient with one readable INFO line each, and gives up with one
`ProviderError` line (the SDK's `backoff` decorator logs each retry twice, once at ERROR).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import functools
import itertools
import math
import os
import socket
import sys
import threading
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec
import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ContentDecodingError
from requests.utils import resolve_proxies
from singer_sdk.exceptions import RetriableAPIError
from typing_extensions import override

from tap_conversations.answer_guards import (
    MEGABYTE,
    BoundedBody,
    ProxyUnreachable,
    connection_problem,
    not_http,
    proxy_unreachable,
    redirect_loop,
    too_large,
)
from tap_conversations.errors import BadBody, ProviderError
from tap_conversations.gate import RequestGate
from tap_conversations.settings import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_RESPONSE_MB

if t.TYPE_CHECKING:
    import logging


class Authenticator(t.Protocol):
    """A requests auth callable. One holding a token also has `renew(rejected_request)`, which
    the streams call once when the server rejects a token we believed valid."""

    def __call__(self, request: requests.PreparedRequest, /) -> requests.PreparedRequest: ...


class ProviderTransport:
    """The session, authenticator and request gate shared by one provider's streams."""

    def __init__(
        self,
        label: str = "API",
        url_setting: str = "api_url",
        pool_size: int = 10,
        max_requests_per_second: float | None = None,
        stopping: threading.Event | None = None,
        *,
        max_response_mb: float = DEFAULT_MAX_RESPONSE_MB,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.session = GuardedSession(label, url_setting, max_response_mb)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.gate = RequestGate(max_requests_per_second, stopping, max_concurrency=max_concurrency)
        self._authenticator: Authenticator | None = None
        self._lock = threading.Lock()

    def authenticator(self, create: t.Callable[[], Authenticator]) -> Authenticator:
        """The provider's authenticator, built by `create` on first use."""
        with self._lock:
            if self._authenticator is None:
                self._authenticator = create()
            return self._authenticator

    def close(self) -> None:
        self.session.close()


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, the scheme's default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # out of range
        port = None
    return f"{scheme}://{parts.hostname or ''}:{port or {'http': 80, 'https': 443}.get(scheme)}"


class GuardedSession(requests.Session):
    """A session that reads proxies and the CA bundle from the environment once per host (with
    `trust_env`, requests walks the whole environment on every request: under Meltano, the
    largest cost after the socket), whose `timeout` is a deadline for the whole answer, status
    line, headers and body (`_Deadline`), whose body may be at most `max_response_mb` once
    decompressed, and which follows a redirect only within the origin (requests would carry the
    credentials along). `~/.netrc` is not read. `answer_guards` words what goes wrong."""

    def __init__(
        self,
        label: str = "API",
        url_setting: str = "api_url",
        max_response_mb: float = DEFAULT_MAX_RESPONSE_MB,
    ) -> None:
        super().__init__()
        self.label = label
        self.url_setting = url_setting
        self.max_response_mb = max_response_mb
        self.trust_env = False
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.verify = ca_bundle or True
        self._proxies_by_origin: dict[tuple[str, str], dict[str, str]] = {}
        _watch_sends()

    def proxies_for(self, request: requests.PreparedRequest) -> dict[str, str]:
        """The proxies requests would use for this request's scheme and host."""
        parts = urlsplit(request.url or "")
        key = (parts.scheme, parts.netloc.lower())
        if (proxies := self._proxies_by_origin.get(key)) is None:
            proxies = resolve_proxies(request, dict(self.proxies), trust_env=True)
            self._proxies_by_origin[key] = proxies
        return proxies

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        if "proxies" not in kwargs:
            kwargs["proxies"] = self.proxies_for(request)
        if self.bound_body not in request.hooks["response"]:  # redirect hops share the list
            request.hooks["response"].append(self.bound_body)
        timeout = kwargs.get("timeout")
        if kwargs.get("stream") or not isinstance(timeout, int | float):
            return super().send(request, **kwargs)  # a redirect hop, inside the outer deadline
        deadline = _current.deadline = _Deadline(timeout)
        failure: BaseException | None = None
        try:
            response = super().send(request, **{**kwargs, "stream": True})
            deadline.attach(getattr(getattr(response.raw, "connection", None), "sock", None))
            _ = response.content  # the whole body, within the deadline and the size limit
        except requests.TooManyRedirects:
            raise redirect_loop(self.label, self.url_setting, request, self.max_redirects) from None
        except requests.exceptions.ProxyError as error:
            proxies = kwargs["proxies"]
            failure = proxy_unreachable(request, proxies, error)
            failure.__cause__ = error
        except (requests.RequestException, OSError) as error:
            failure = error
        finally:
            _current.deadline = None
            expired = deadline.finish()
        if expired:  # whatever was read is not the whole answer
            msg = f"no complete answer within {timeout:g} s"
            raise requests.exceptions.ReadTimeout(msg, request=request) from failure
        if failure is not None:
            raise failure
        return response

    def bound_body(self, response: requests.Response, **_: t.Any) -> requests.Response:
        """A response hook (`send` adds it to every request): any body read, a redirect's too
        (requests reads those to release the connection), stops past `max_response_mb`."""
        limit_mb = self.max_response_mb
        request = response.request
        response.raw = BoundedBody(
            response.raw, int(limit_mb * MEGABYTE), lambda: too_large(self.label, request, limit_mb)
        )
        return response

    @override
    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        came_from = origin(response.request.url or "")
        going_to = origin(prepared_request.url or "")
        if came_from != going_to:
            response.close()
            msg = (
                f"{self.label}: {response.request.method} "
                f"{urlsplit(response.request.url or '').path} was redirected (HTTP "
                f"{response.status_code}) to another origin, {going_to}; credentials are only "
                f"sent to {came_from} ({self.url_setting}), so the redirect was not followed. "
                f"If the API moved, set {self.url_setting} to its new address"
            )
            raise ProviderError(msg)
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]


class _Deadline(threading.Timer):
    """Shuts the socket of one exchange down when its time is up. The socket comes with each
    `http.client` send (its documented audit event carries the connection, whose `sock` is
    public): requests shows a request's connection only once the headers are in
    (`response.raw.connection`), too late to cut off a server trickling them."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds, self._expire)
        self.daemon = True
        self.sock: socket.socket | None = None
        self.expired = False
        self.start()

    def attach(self, sock: socket.socket | None) -> None:
        self.sock = sock or self.sock
        if self.expired:
            self._cut()

    def _expire(self) -> None:
        self.expired = True
        self._cut()

    def _cut(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> bool:
        """The exchange ended: whether its time was up. The timer's thread is gone."""
        self.cancel()
        self.join()
        return self.expired


_current = threading.local()  # `deadline`: the `_Deadline` of the exchange this thread sends


def _on_audit(event: str, args: tuple[t.Any, ...]) -> None:
    if event == "http.client.send" and (deadline := getattr(_current, "deadline", None)):
        deadline.attach(getattr(args[0], "sock", None))


@functools.cache
def _watch_sends() -> None:
    """Hand each socket a `GuardedSession` sends on to its exchange's deadline."""
    sys.addaudithook(_on_audit)  # a hook cannot be removed: installed once, on first use


_DECODED_BODY = "_tap_conversations_body"


def decoded_body(response: requests.Response) -> t.Any:
    """The response's JSON body, decoded once (in `validate_response`) and kept on it; raises
    `msgspec.DecodeError` (not JSON) or `UnicodeDecodeError` (not UTF-8)."""
    if not hasattr(response, _DECODED_BODY):
        setattr(response, _DECODED_BODY, msgspec.json.decode(response.content))
    return getattr(response, _DECODED_BODY)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` (seconds or an HTTP date) as seconds from now, at least 0; `None` when
    absent or unusable (not a number or date, `inf`, `nan`)."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


RETRIABLE: tuple[type[BaseException], ...] = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    ContentDecodingError,
)


def duration(seconds: float) -> str:
    """`1.4 s`, `45 s`, `3600 s (60 min)`: a wait as a person reads it."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    text = f"{seconds:.0f} s"
    return f"{text} ({seconds / 60:.0f} min)" if seconds >= 120 else text


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
    waits: t.Callable[[], t.Iterator[float]]  # backoff waits, jittered
    logger: logging.Logger
    on_retry: t.Callable[[], None]
    credential_settings: tuple[str, ...] = ()

    def call(
        self, request: requests.PreparedRequest, send: t.Callable[[], requests.Response]
    ) -> requests.Response:
        """`send()` until it answers, fails for good, or runs out of attempts."""
        waits = self.waits()
        for attempt in itertools.count(1):
            sent_at = self.gate.wait_turn()
            try:
                answer = send()
            except RETRIABLE as error:
                provider_wide = self.gate.finished(sent_at, getattr(error, "response", None))
                if attempt >= self.max_tries:
                    raise self.gave_up(request, error, attempt) from None
                wait, note = self.wait_after(request, error, next(waits), provider_wide)
                self.logger.info(
                    "%s: %s %s %s, retrying in %s%s (attempt %d of %d)",
                    *(self.label, request.method, self.relative_path(request.url)),
                    *(self.what_failed(request, error), duration(wait), note),
                    *(attempt + 1, self.max_tries),
                )
                self.on_retry()
                self.gate.sleep(wait)
                continue
            except ValueError as error:  # requests refuses a header with a line break
                self.gate.finished(sent_at, None)
                if "header" not in str(error).lower():
                    raise
                settings = ", ".join(f"{self.provider}.{s}" for s in self.credential_settings)
                msg = (
                    f"{self.who}: {request.method} {self.relative_path(request.url)} could not "
                    "be sent: a header value is invalid (a line break or control character); "
                    f"check {settings}"
                )
                raise ProviderError(msg) from None
            except BaseException:
                self.gate.finished(sent_at, None)
                raise
            self.gate.finished(sent_at, answer)
            return answer
        raise AssertionError  # unreachable: `count` never ends

    def wait_after(
        self,
        request: requests.PreparedRequest,
        error: BaseException,
        backoff_wait: float,
        provider_wide: bool = False,
    ) -> tuple[float, str]:
        """How long to wait before the next attempt, and what to say about it. A Retry-After
        is honoured; one under a second gets the backoff instead (a `Retry-After: 0`
        answered forever would otherwise be asked again at once). It holds every worker
        only when the answer speaks for the whole provider (`provider_wide`: a 429, or 503s
        from several workers)."""
        response = getattr(error, "response", None)
        header = response.headers.get("Retry-After") if response is not None else None
        seconds = retry_after_seconds(header)
        note = ""
        if header is not None and seconds is None:
            note = f" (its Retry-After {header[:40]!r} is not usable, ignored)"
        elif seconds is not None and seconds > self.max_retry_after:
            msg = (
                f"{self.who}: {request.method} {self.relative_path(request.url)} "
                f"{self.what_failed(request, error)} and asks to wait {duration(seconds)} "
                f"(Retry-After), longer than max_retry_after_seconds "
                f"({self.max_retry_after:g} s); raise that setting to wait, or run later"
            )
            raise ProviderError(msg)
        elif seconds is not None and seconds < 1:
            note = f" (its Retry-After {header or 0!r} is under a second: the backoff applies)"
        elif seconds is not None:
            note = " as its Retry-After asks"
        wait = seconds if seconds is not None and seconds >= 1 else backoff_wait
        if provider_wide:  # every worker of this provider waits, not just this one
            self.gate.pause(seconds or wait)
            note += f" (every {self.label} request waits)"
        return wait, note

    def what_failed(  # noqa: PLR0911 - one return per kind of failure
        self, request: requests.PreparedRequest, error: BaseException
    ) -> str:
        """`answered HTTP 503 ...`, `could not reach host:port (connection refused)` ..."""
        response = getattr(error, "response", None)
        if isinstance(error, BadBody):
            return error.reason
        if isinstance(error, RetriableAPIError) and response is not None:
            return f"answered HTTP {response.status_code} {response.reason}"
        where = origin(request.url or "").partition("://")[2]
        limit = f"request_timeout_seconds ({self.timeout:g} s)"
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return f"could not connect to {where} within {limit}"
        if isinstance(error, requests.exceptions.Timeout):
            return f"got no complete answer from {where} within {limit}"
        if isinstance(error, requests.exceptions.ChunkedEncodingError | ContentDecodingError):
            return f"sent an answer that was cut short or garbled ({where})"
        if isinstance(error, ProxyUnreachable):
            return str(error)
        if isinstance(error, requests.exceptions.ConnectionError) and (broken := not_http(error)):
            return f"sent an answer that is not valid HTTP ({where}: {broken})"
        if isinstance(error, requests.exceptions.ConnectionError | ConnectionResetError):
            return f"could not reach {where} ({connection_problem(error)})"
        return f"failed ({type(error).__name__})"

    def gave_up(
        self, request: requests.PreparedRequest, error: BaseException, attempts: int
    ) -> ProviderError:
        """One line for a request that still failed after every attempt."""
        response = getattr(error, "response", None)
        answered = isinstance(error, RetriableAPIError) and not isinstance(error, BadBody)
        if answered and response is not None:
            last = f"last answer HTTP {response.status_code} {response.reason}"
        else:
            last = f"last error: {self.what_failed(request, error)}"
        hint = ""
        if isinstance(error, requests.exceptions.Timeout):
            hint = " — raise request_timeout_seconds if the server is only slow"
        elif isinstance(error, ProxyUnreachable):
            hint = f" — check that proxy, or {error.variable} and NO_PROXY"
        elif isinstance(error, requests.exceptions.ConnectionError | ConnectionResetError):
            hint = f" — check {self.provider}.api_url"
        path = urlsplit(request.url or "").path
        return ProviderError(
            f"{self.who}: gave up on {path} after {attempts} attempts ({last}){hint}"
        )

    def relative_path(self, url: str | None) -> str:
        path = urlsplit(url or "").path
        base = urlsplit(self.api_url).path.rstrip("/")
        return path[len(base) :] if base and path.startswith(base + "/") else path or "/"
