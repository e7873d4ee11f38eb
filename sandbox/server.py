"""The HTTP machinery every provider shares: routing, latency, fault injection, the request log.

A provider is a `Provider` subclass that turns a parsed `Request` into a `Response` (or raises
`ApiError` with one). Everything else — sockets, keep-alive, injected faults, the log tests read,
and the detection of clients that retry before a `Retry-After` has passed — lives here.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
import random
import re
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote

from sandbox.data import SandboxData
from sandbox.ratelimit import TokenBucket
from sandbox.settings import FaultSettings, SandboxSettings

#: Requests arriving this close to either end of a Retry-After window are not counted early.
EARLY_RETRY_MARGIN = 0.05

_BAD_GATEWAY_HTML = (
    b"<html><head><title>502 Bad Gateway</title></head><body>"
    b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


# --- what providers see ---------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One parsed request. `segments` is the decoded path below the provider's prefix."""

    method: str
    path: str
    raw_path: str
    segments: tuple[str, ...]
    query: dict[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    host: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def int_param(
        self, name: str, default: int | None = None, minimum: int = 0, maximum: int | None = None
    ) -> int:
        """Query parameter `name` as an integer; `BadParameter` if missing, malformed or out of
        [minimum, maximum]. An empty value counts as missing."""
        value = self.query.get(name) or None
        if value is None and default is not None:
            return default
        limits = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        problem = BadParameter(name, f"{name} must be an integer {limits}")
        if value is None:
            raise BadParameter(name, f"{name} is required: an integer {limits}")
        if not re.fullmatch(r"-?[0-9]+", value):
            raise problem
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise problem
        return number


class BadParameter(ValueError):
    """A query parameter a provider cannot accept; each provider words its own error body."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a credential from a request with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, headers=headers or {})


class ApiError(Exception):
    """Raised by a provider to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class Provider(ABC):
    """One vendor API, mounted under `prefix`. Subclasses implement `handle`."""

    name: ClassVar[str]
    prefix: ClassVar[str]
    #: Paths outside `prefix` that this provider also answers (its `segments` are then empty).
    extra_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: SandboxSettings, data: SandboxData) -> None:
        self.settings = settings
        self.data = data

    @abstractmethod
    def handle(self, request: Request) -> Response:
        """Answer a request (authentication included); may raise `ApiError`."""


# --- what tests see -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the sandbox answered it. `arrived` is a `time.monotonic()` value."""

    provider: str | None
    method: str
    path: str
    raw_path: str
    query: dict[str, str]
    status: int
    fault: str | None
    arrived: float


class RequestLog:
    """Thread-safe record of every request, and of those that ignored a Retry-After."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []
        self._early: list[LoggedRequest] = []
        self._windows: dict[str, list[tuple[float, float]]] = {}

    def record(self, entry: LoggedRequest, *, early: bool) -> None:
        with self._lock:
            self._entries.append(entry)
            if early:
                self._early.append(entry)

    def open_window(self, scope: str, seconds: float) -> None:
        """Clients were just asked to wait `seconds` before calling `scope` again: a provider
        (after a 429: its rate limit) or a provider and path (after a 503: one request)."""
        start = time.monotonic()
        with self._lock:
            windows = [w for w in self._windows.get(scope, []) if w[1] > start]
            windows.append((start + EARLY_RETRY_MARGIN, start + seconds - EARLY_RETRY_MARGIN))
            self._windows[scope] = windows

    def is_early(self, scopes: tuple[str, ...], arrived: float) -> bool:
        with self._lock:
            windows = [w for scope in scopes for w in self._windows.get(scope, [])]
            return any(lo < arrived < hi for lo, hi in windows)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def early_retries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._early)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self._early.clear()
            self._windows.clear()


def retry_after_seconds(value: str) -> float:
    """How long a `Retry-After` header value (seconds or an HTTP-date) asks to wait from now."""
    if value.strip().isdigit():
        return float(value)
    return parsedate_to_datetime(value).timestamp() - time.time()


# --- faults ---------------------------------------------------------------------------------


class FaultInjector:
    """Draws, from one seeded generator, whether and how each request fails."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: FaultSettings | None = None
        self._rng = random.Random()
        self._429_count = 0

    def draw(self, settings: FaultSettings, provider: str, path: str = "") -> str | None:
        with self._lock:
            if settings != self._settings:
                self._settings, self._rng = settings, random.Random(settings.seed)
            if provider not in settings.providers or settings.rate <= 0:
                return None
            if settings.path_contains not in path:
                return None
            if self._rng.random() >= settings.rate:
                return None
            return self._rng.choice(settings.kinds)

    def canned(self, kind: str, settings: FaultSettings) -> Response | None:
        """The response of a fault that replaces the provider's answer, if `kind` is one."""
        wait = settings.retry_after_seconds
        if kind == "500":
            return json_response(500, {"error": "server error", "message": "injected fault"})
        if kind == "502_html":
            return Response(502, _BAD_GATEWAY_HTML, content_type="text/html; charset=utf-8")
        if kind == "503_retry_after":
            body = {"error": "unavailable", "message": "injected fault"}
            return json_response(503, body, {"Retry-After": str(math.ceil(wait))})
        if kind == "429":
            body = {"error": "too many requests", "message": "injected fault"}
            return json_response(429, body, {"Retry-After": self._alternating_retry_after(wait)})
        return None

    def _alternating_retry_after(self, seconds: float) -> str:
        """Integer seconds and HTTP-date by turns; the date is rounded up, never shorter."""
        with self._lock:
            self._429_count += 1
            as_date = self._429_count % 2 == 0
        if not as_date:
            return str(math.ceil(seconds))
        return formatdate(math.ceil(time.time() + seconds + 0.1), usegmt=True)


# --- dispatching ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    response: Response
    truncate: bool  # the "drop" fault: announce the full body, send half, hang up


class Dispatcher:
    """Turns raw requests into replies: routing, latency, faults and logging."""

    def __init__(self, settings: SandboxSettings, providers: list[Provider]) -> None:
        self.settings = settings
        self.providers = providers
        self.log = RequestLog()
        self.faults = FaultInjector()
        self.stopping = threading.Event()
        self._buckets: dict[tuple[str, float, float], TokenBucket] = {}
        self._buckets_lock = threading.Lock()

    def bucket(self, provider: str) -> TokenBucket | None:
        """The provider's token bucket, if the settings ask for a rate limit."""
        rate = self.settings.rate_limit_per_second
        if rate is None:
            return None
        key = (provider, rate, self.settings.rate_limit_burst or max(1.0, rate))
        with self._buckets_lock:
            return self._buckets.setdefault(key, TokenBucket(key[1], key[2]))

    def refused_by_bucket(self) -> int:
        """Requests refused by every token bucket so far."""
        with self._buckets_lock:
            return sum(bucket.refused for bucket in self._buckets.values())

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, arrived: float
    ) -> Reply:
        raw_path, _, raw_query = target.partition("?")
        provider = self._route(raw_path)
        name = provider.name if provider else None
        scopes = (name or "", f"{name} {unquote(raw_path)}")
        early = provider is not None and self.log.is_early(scopes, arrived)
        bucket = self.bucket(provider.name) if provider else None
        allowed, limit_headers = bucket.take(arrived) if bucket else (True, {})
        self._pause(self.settings.latency_ms / 1000)
        faults = self.settings.faults
        fault = self.faults.draw(faults, provider.name, unquote(raw_path)) if provider else None
        request = Request(
            method=method,
            path=unquote(raw_path),
            raw_path=raw_path,
            segments=(
                _segments(raw_path[len(provider.prefix) :])
                if provider and raw_path not in provider.extra_paths
                else ()
            ),
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            headers={key.lower(): value for key, value in headers.items()},
            body=body,
            host=headers.get("Host") or "",
        )
        if allowed:
            response = self._respond(provider, request, fault, faults)
        else:
            fault = "rate_limit"
            refusal = {"error": "too many requests", "message": "rate limit exceeded"}
            response = json_response(429, refusal, {"Retry-After": "1"})
        if self.settings.rate_limit_headers:
            response.headers.update(limit_headers)
        retry_after = response.headers.get("Retry-After")
        if provider and retry_after and response.status in (429, 503):
            # A 429 is about the client; a 503 only about the request that got it.
            scope = scopes[0] if response.status == 429 else scopes[1]
            self.log.open_window(scope, retry_after_seconds(retry_after))
        entry = LoggedRequest(
            name, method, request.path, raw_path, request.query, response.status, fault, arrived
        )
        self.log.record(entry, early=early)
        return Reply(response, truncate=fault == "drop")

    def _route(self, raw_path: str) -> Provider | None:
        for provider in self.providers:
            if raw_path == provider.prefix or raw_path.startswith(provider.prefix + "/"):
                return provider
            if raw_path in provider.extra_paths:
                return provider
        return None

    def _respond(
        self, provider: Provider | None, request: Request, fault: str | None, faults: FaultSettings
    ) -> Response:
        canned = self.faults.canned(fault, faults) if fault else None
        if canned:
            return canned
        if fault == "slow":
            self._pause(faults.slow_seconds)
        response = self._handle(provider, request)
        if fault == "malformed_json":
            return Response(200, response.body[: len(response.body) // 2] or b"{")
        if fault == "drop":
            return Response(200, response.body, response.content_type, response.headers)
        return response

    @staticmethod
    def _handle(provider: Provider | None, request: Request) -> Response:
        if provider is None:
            message = f"no sandbox route for {request.path}"
            return json_response(404, {"error": "not found", "message": message})
        try:
            return provider.handle(request)
        except ApiError as error:
            return error.response

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self.stopping.wait(seconds)


def _segments(relative_path: str) -> tuple[str, ...]:
    """`/conversations/580%3Aab/` -> `("conversations", "580:ab", "")`: split, then decode."""
    return tuple(unquote(part) for part in relative_path.split("/")[1:])


# --- sockets --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tap-conversations-sandbox"
    server: SandboxServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        arrived = time.monotonic()
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            self.send_error(400, "bad Content-Length")
            return
        body = self.rfile.read(int(length))
        headers = dict(self.headers.items())
        reply = self.server.dispatcher.dispatch(self.command, self.path, headers, body, arrived)
        response = reply.response
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.truncate:
            self.wfile.write(response.body[: len(response.body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request line on stderr."""


class SandboxServer(ThreadingHTTPServer):
    """Loopback HTTP/1.1 server with keep-alive, TCP_NODELAY and a clean, joined shutdown."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # Without this every keep-alive response stalls ~40 ms (Nagle + delayed ACK).
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._connections.add(connection)
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work, args=(request, client_address), daemon=True, name="sandbox-conn"
        )
        with self._lock:
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, our own "drop" fault) are routine, not errors."""
        if isinstance(sys.exception(), OSError):
            return
        super().handle_error(request, client_address)

    def connections_nodelay(self) -> list[bool]:
        """Whether each open connection has TCP_NODELAY set (for the sandbox's own tests)."""
        with self._lock:
            connections = list(self._connections)
        flags = []
        for connection in connections:
            with contextlib.suppress(OSError):  # closed meanwhile
                flags.append(bool(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        return flags

    def close_connections(self, timeout: float = 5.0) -> None:
        """Hang up on every open connection and wait for their threads to finish."""
        with self._lock:
            connections, workers = list(self._connections), list(self._workers)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
