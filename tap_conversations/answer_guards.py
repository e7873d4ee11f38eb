"""What `transport.GuardedSession` says about answers and networks no API should give.

A body larger than `max_response_mb` once decompressed (a gzip bomb), a redirect loop, a proxy
that cannot be reached: each becomes one line naming the provider, the path or the proxy and
its variable, and what to change. Proxy URLs are shown without their credentials. Why a
connection failed (`connection_problem`) and an answer that is not HTTP (`not_http`) are put in
words here too, for `transport.RetryPolicy`'s lines.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import typing as t
from urllib.parse import urlsplit

import requests
from requests.utils import select_proxy

from tap_conversations.errors import ProviderError

if t.TYPE_CHECKING:
    from collections.abc import Iterator

MEGABYTE = 1024 * 1024


class BoundedBody:
    """A response's `raw` that stops handing out decoded bytes past `limit` bytes.

    requests reads `response.content` through `raw.stream(...)`, which urllib3 decompresses a
    chunk at a time: counting there keeps memory bounded however far a body inflates. Anything
    else is the wrapped `raw`'s.
    """

    def __init__(self, raw: t.Any, limit: int, too_large: t.Callable[[], ProviderError]) -> None:
        self.raw = raw
        self.limit = limit
        self.too_large = too_large

    def stream(self, amt: int = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        total = 0
        for chunk in self.raw.stream(amt, decode_content=decode_content):
            total += len(chunk)
            if total > self.limit:
                self.raw.close()  # the rest is never read: the connection goes
                raise self.too_large()
            yield chunk

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.raw, name)


def too_large(label: str, request: requests.PreparedRequest, limit_mb: float) -> ProviderError:
    path = urlsplit(request.url or "").path or "/"
    return ProviderError(
        f"{label}: {request.method} {path} answered more than {limit_mb:g} MB once "
        f"decompressed, the limit max_response_mb sets; the answer was not read. Raise "
        "max_response_mb if the API really sends answers this large"
    )


def redirect_loop(
    label: str, url_setting: str, request: requests.PreparedRequest, redirects: int
) -> ProviderError:
    path = urlsplit(request.url or "").path or "/"
    return ProviderError(
        f"{label}: {request.method} {path} was redirected more than {redirects} times within "
        f"its origin (a redirect loop), so it was given up; check {url_setting} and the "
        "server's redirects"
    )


class ProxyUnreachable(requests.exceptions.ProxyError):
    """The proxy from the environment could not be reached; the message names it (without
    credentials) and the variable it came from."""

    def __init__(self, message: str, variable: str, request: requests.PreparedRequest) -> None:
        super().__init__(message, request=request)
        self.variable = variable


def proxy_unreachable(
    request: requests.PreparedRequest, proxies: dict[str, str], error: BaseException
) -> ProxyUnreachable:
    """`could not reach the proxy http://host:port (HTTPS_PROXY): connection refused`, or
    `...: it answered 407 Proxy Authentication Required` when it refused the tunnel."""
    problem = connection_problem(error)
    tunnel = "Tunnel connection failed: "
    for cause in _causes(error):
        if str(cause).startswith(tunnel):  # urllib3's words for a CONNECT not answered 200
            problem = f"it answered {str(cause).removeprefix(tunnel)[:100]}"
    url = request.url or ""
    proxy = select_proxy(url, proxies) or ""
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
    shown = f"{parts.scheme}://{parts.hostname}" if parts else "(unknown)"
    if parts is not None and parts.port is not None:
        shown += f":{parts.port}"
    variable = proxy_variable(urlsplit(url).scheme)
    message = f"could not reach the proxy {shown} ({variable}): {problem}"
    return ProxyUnreachable(message, variable, request)


def proxy_variable(scheme: str) -> str:
    """The environment variable a proxy for `scheme` came from, as urllib reads them: the
    scheme's own before `ALL_PROXY`, lower case before upper case."""
    for name in (f"{scheme}_proxy", "all_proxy"):
        for variable in (name, name.upper()):
            if os.environ.get(variable):
                return variable
    return f"{scheme.upper()}_PROXY"


def _causes(error: BaseException) -> list[BaseException]:
    """The error and all it wraps: cause, context, reason, args."""
    causes: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop(0)
        if all(current is not seen for seen in causes):
            causes.append(current)
            linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
            todo += [e for e in [*linked, *current.args] if isinstance(e, BaseException)]
    return causes


_CLOSED = ConnectionResetError | http.client.RemoteDisconnected | BrokenPipeError


def not_http(error: BaseException) -> str | None:
    """What `http.client` found wrong with an answer's status line or headers (`got more than
    100 headers`, a line too long), if that is why the request failed."""
    for cause in _causes(error):
        if isinstance(cause, http.client.HTTPException) and not isinstance(cause, _CLOSED):
            return str(cause)[:120] or type(cause).__name__
    return None


def connection_problem(error: BaseException) -> str:
    """Why a connection failed, in words: refused, name not resolved, TLS, closed."""
    causes = _causes(error)
    ssl_errors = [e for e in causes if isinstance(e, ssl.SSLError)]
    if ssl_errors or any(isinstance(e, requests.exceptions.SSLError) for e in causes):
        detail = (getattr(ssl_errors[0], "reason", None) if ssl_errors else None) or "failed"
        if detail == "CERTIFICATE_VERIFY_FAILED":
            detail += "; to trust a private CA, set REQUESTS_CA_BUNDLE to your CA's PEM file"
        return f"TLS error: {detail}"
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return "connection refused"
    if any(
        isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError" for e in causes
    ):
        return "host name not resolved"
    if any(isinstance(e, _CLOSED) for e in causes):
        return "connection closed by the server"
    if any(isinstance(e, TimeoutError) for e in causes):
        return "timed out"
    return "connection failed"
