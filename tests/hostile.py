"""A tiny scripted HTTP/1.1 server on 127.0.0.1 for answers the sandbox does not give.

    def script(exchange: Exchange) -> None:
        exchange.reply(200, b"<html>maintenance</html>", content_type="text/html")

    with HostileServer(script) as server:
        config = {"respondent": {"api_url": server.url, ...}}

The script gets each request (method, path, headers, body, and how many requests came before)
and answers however it likes, down to writing raw bytes slowly to the socket.
"""

from __future__ import annotations

import socket
import threading
import time
import typing as t
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

if t.TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class Exchange:
    """One request and the means to answer it."""

    def __init__(self, handler: BaseHTTPRequestHandler, request: Seen, number: int) -> None:
        self._handler = handler
        self.request = request
        self.number = number  # 1 for the first request the server received

    def reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.start(status, len(body), content_type, headers)
        self._handler.wfile.write(body)

    def start(
        self,
        status: int,
        length: int,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send the status line and headers only; the body is up to the script."""
        handler = self._handler
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.flush()

    def trickle(self, body: bytes, every: float, stop: threading.Event) -> None:
        """Write `body` one byte at a time, `every` seconds apart, until done or stopped."""
        self.raw(body, every, stop)

    def raw(self, data: bytes, every: float, stop: threading.Event) -> None:
        """Write raw bytes (a status line and headers too) one at a time, `every` s apart."""
        self._handler.close_connection = True
        for byte in data:
            if stop.wait(every):
                return
            try:
                self._handler.wfile.write(bytes([byte]))
                self._handler.wfile.flush()
            except OSError:
                return


Script = t.Callable[[Exchange], None]


class HostileServer:
    """Runs a `Script` for every request; `requests` lists what arrived, in order."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_type())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler_type(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with server._lock:
                    server.requests.append(seen)
                    number = len(server.requests)
                server.script(Exchange(self, seen, number))

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: t.Any) -> None:
                """Quiet."""

        return Handler

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def respondent_config(url: str, **extra: t.Any) -> dict[str, t.Any]:
    """A Respondent-only tap config pointing at `url`."""
    return {
        "respondent": {"api_url": url, "api_key": "hostile-key-5150", "api_secret": "hs-8841"},
        **extra,
    }


def empty_respondent_page(exchange: Exchange) -> None:
    exchange.reply(200, b'{"results": [], "page": 1, "pageSize": 100, "totalResults": 0}')


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    """Poll `condition` until it holds or `timeout` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
