"""HTTP plumbing one provider's streams share during a run.

- `ProviderTransport`: one pooled `GuardedSession` (keep-alive connections reused across list
  and detail endpoints and worker threads), one authenticator (a token obtained once serves
  every stream) and one `RequestGate`.
- `GuardedSession`: a `requests.Session` whose timeout is a deadline for the whole answer (not
  for each read of the socket) and which never follows a redirect to another origin, so
  credentials stay with the configured server.
- `EnvironmentOnceSession`: the proxy and CA-bundle settings of the environment, read once per
  run and host instead of on every request.
- `RequestGate`: every request of a provider passes it before it is sent; it holds all of that
  provider's workers while a `Retry-After` pause runs, spaces requests under a rate cap, and
  lets a termination signal end every wait at once.
- `retry_after_seconds` reads `Retry-After` (seconds or an HTTP date); `decoded_body` decodes a
  JSON body once and caches it on the response.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import heapq
import itertools
import math
import os
import socket
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3
import urllib3.connection
import urllib3.response
from requests.adapters import HTTPAdapter
from requests.utils import resolve_proxies
from typing_extensions import override

from tap_conversations.errors import Interrupted, ProviderError


class Authenticator(t.Protocol):
    """A requests auth callable. One holding a token also has `renew()`, which the streams
    call once when the server rejects a token we believed valid."""

    def __call__(self, request: requests.PreparedRequest, /) -> requests.PreparedRequest: ...


class RequestGate:
    """Holds one provider's requests during a Retry-After pause and under a rate cap.

    Every wait here (and every backoff sleep, through `sleep`) ends as soon as `stopping` is
    set, with `Interrupted`: a termination signal must not wait out an hour-long Retry-After.
    """

    def __init__(
        self,
        max_requests_per_second: float | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self._interval = 1 / max_requests_per_second if max_requests_per_second else 0.0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._lock = threading.Lock()
        self.stopping = stopping or threading.Event()

    def pause(self, seconds: float) -> None:
        """Hold every request of this provider for `seconds` from now."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def wait_turn(self) -> None:
        """Block until this provider may send its next request."""
        while True:
            with self._lock:
                now = time.monotonic()
                ready_at = max(self._paused_until, self._next_slot)
                if now >= ready_at:
                    self._next_slot = max(self._next_slot, now) + self._interval
                    break
            self.sleep(ready_at - now)
        if self.stopping.is_set():
            raise Interrupted

    def sleep(self, seconds: float) -> None:
        """Sleep, unless the run is stopping (then raise `Interrupted` at once)."""
        if self.stopping.wait(max(seconds, 0.0)):
            raise Interrupted


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, with the scheme's default port made explicit."""
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default_port
    except ValueError:
        port = None
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


class EnvironmentOnceSession(requests.Session):
    """A session that reads `HTTP(S)_PROXY`, `ALL_PROXY`, `NO_PROXY` and `REQUESTS_CA_BUNDLE`
    (or `CURL_CA_BUNDLE`) once, not on every request.

    With `trust_env` on, requests walks the whole process environment several times per
    request to find proxies (`resolve_proxies` → `getproxies_environment`); under Meltano,
    which runs the tap with a large environment, that was the largest cost after the socket.
    Here `trust_env` is off and the same requests functions are called once per scheme and
    host, so a proxy or bypass set in the environment is honoured as requests would honour
    it. The CA bundle is applied as `Session.request` applies it (the SDK's `send` does not
    read it at all otherwise). `~/.netrc`, the other thing `trust_env` reads, is not used:
    credentials come from the tap config.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        self._proxies_by_origin: dict[tuple[str, str], dict[str, str]] = {}

    def proxies_for(self, request: requests.PreparedRequest) -> dict[str, str]:
        """The proxies requests would use for this request's scheme and host."""
        parts = urlsplit(request.url or "")
        origin = (parts.scheme, parts.netloc.lower())
        proxies = self._proxies_by_origin.get(origin)
        if proxies is None:
            proxies = resolve_proxies(request, dict(self.proxies), trust_env=True)
            self._proxies_by_origin[origin] = proxies
        return proxies

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        if "proxies" not in kwargs:
            kwargs["proxies"] = self.proxies_for(request)
        return super().send(request, **kwargs)


class GuardedSession(EnvironmentOnceSession):
    """A session with a whole-answer deadline that keeps credentials on their origin.

    `timeout` given as one number bounds the whole exchange, status line, headers and body: a
    server trickling its answer a byte at a time is cut off when the deadline passes (requests
    alone waits `timeout` for each byte). Redirects are followed only within the origin
    of the request that was sent; a redirect elsewhere ends the request with one line, since
    requests would carry `x-api-key`-style headers along to the other server.
    """

    def __init__(self, label: str, url_setting: str) -> None:
        super().__init__()
        self.label = label
        self.url_setting = url_setting

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        timeout = kwargs.get("timeout")
        if kwargs.get("stream") or not isinstance(timeout, int | float):
            return super().send(request, **kwargs)  # a redirect hop, inside the outer deadline
        watch = _Deadline()
        _current.deadline = watch
        _WATCHDOG.watch(watch, time.monotonic() + timeout)
        try:
            response = super().send(request, **{**kwargs, "stream": True})
            # Pools this module did not build (a proxy's) attach their socket only now.
            watch.attach(getattr(getattr(response.raw, "connection", None), "sock", None))
            read_whole_body(response)
        except (requests.RequestException, OSError) as error:
            if not watch.expired:
                raise
            msg = f"no complete answer within {timeout:g} s"
            raise requests.exceptions.ReadTimeout(msg, request=request) from error
        finally:
            watch.finish()
            _current.deadline = None
        return response

    @override
    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        came_from = origin(response.request.url or "")
        going_to = origin(prepared_request.url or "")
        if came_from != going_to:
            response.close()
            method = response.request.method
            msg = (
                f"{self.label}: {method} {urlsplit(response.request.url or '').path} was "
                f"redirected (HTTP {response.status_code}) to another origin, {going_to}; "
                f"credentials are only sent to {came_from} ({self.url_setting}), so the "
                f"redirect was not followed. If the API moved, set {self.url_setting} to "
                "its new address"
            )
            raise ProviderError(msg)
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]


def read_whole_body(response: requests.Response) -> None:
    """Read the body of a streamed `response` in one read, as its `content`.

    `Response.content` reads in 10 KiB chunks, each through urllib3's and http.client's
    Python layers: measured 1.7 ms of CPU for a 640 KB onQ page, about as much as everything
    else that request costs. `iter_content(None)` reads it whole, with the exceptions requests
    raises for a broken body (`ChunkedEncodingError`, ...), and the connection goes back to
    the pool as after `content`. Private: `_content` is where `content` keeps the body once
    read (a `requests.Response` pickles it under that name; tests/test_transport_body.py
    fails if that changes).
    """
    if response._content is False:  # type: ignore[comparison-overlap]  # False: not read yet
        response._content = b"".join(response.iter_content(None))


class _Deadline:
    """The socket of one exchange, cut when its deadline passes (by `_Watchdog`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self._done = False

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            if sock is None or self._done:
                return
            self._sock = sock
            if self.expired:
                self._cut()

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return  # answered in time; the connection may already serve another request
            self.expired = True
            self._cut()

    def finish(self) -> None:
        with self._lock:
            self._done = True

    @property
    def done(self) -> bool:
        return self._done

    def _cut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


_MAX_PENDING_DEADLINES = 4096


class _Watchdog:
    """One thread that expires every `_Deadline` of the process when its time comes.

    A timer thread per request would cost a thread start each (measured: +0.3 ms CPU per
    request); finished deadlines are dropped when they come up, or in bulk past 4,096.
    """

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Deadline]] = []
        self._count = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline, at: float) -> None:
        with self._wake:
            if len(self._due) > _MAX_PENDING_DEADLINES:  # mostly answered long ago: drop those
                self._due = [entry for entry in self._due if not entry[2].done]
                heapq.heapify(self._due)
            heapq.heappush(self._due, (at, next(self._count), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="deadline-watchdog", daemon=True
                )
                self._thread.start()
            if self._due[0][2] is deadline:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, deadline = heapq.heappop(self._due)
            deadline.expire()


_WATCHDOG = _Watchdog()
_current = threading.local()  # `deadline`: the `_Deadline` of the exchange this thread sends


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """Hands its socket to the sending thread's deadline before waiting for the answer, so a
    server trickling its status line or headers is cut off too."""

    @override
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        deadline: _Deadline | None = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.attach(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection, _WatchedHTTPConnection):
    pass


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections whose socket a `GuardedSession` deadline can cut."""

    @override
    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }


@dataclass
class ProviderTransport:
    """The session, authenticator and request gate shared by one provider's streams."""

    label: str = "API"
    url_setting: str = "api_url"
    pool_size: int = 10
    max_requests_per_second: float | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    session: GuardedSession = field(init=False)
    gate: RequestGate = field(init=False)
    _authenticator: Authenticator | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.session = GuardedSession(self.label, self.url_setting)
        adapter = WatchedAdapter(pool_connections=2, pool_maxsize=self.pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.gate = RequestGate(self.max_requests_per_second, self.stopping)

    def authenticator(self, create: t.Callable[[], Authenticator]) -> Authenticator:
        """The provider's authenticator, built by `create` on first use."""
        with self._lock:
            if self._authenticator is None:
                self._authenticator = create()
            return self._authenticator

    def close(self) -> None:
        self.session.close()


_DECODED_BODY = "_tap_conversations_body"
_UNDECODED = object()


def decoded_body(
    response: requests.Response, typed: msgspec.json.Decoder[t.Any] | None = None
) -> t.Any:
    """The response's JSON body, decoded once (in `validate_response`) and cached on it.

    With `typed` (a stream's page decoder, see `record_types`), a body that is exactly what
    its type says decodes to that type; any other body is decoded untyped.
    Raises `msgspec.DecodeError` for a body that is not JSON and `UnicodeDecodeError` for
    one that is not UTF-8.
    """
    if not hasattr(response, _DECODED_BODY):
        body: t.Any = _UNDECODED
        if typed is not None:
            with contextlib.suppress(msgspec.DecodeError):  # ValidationError is one too
                body = typed.decode(response.content)
        if body is _UNDECODED:
            body = msgspec.json.decode(response.content)
        setattr(response, _DECODED_BODY, body)
    return getattr(response, _DECODED_BODY)


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` value as seconds from now: a number of seconds or an HTTP date.

    `None` when absent or unusable (not a number or date, `inf`, `nan`); a date in the past
    or a negative number is 0.
    """
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
