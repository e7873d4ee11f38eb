"""HTTP plumbing one provider's streams share during a run.

- `ProviderTransport`: one pooled `requests.Session` (keep-alive connections reused across list
  and detail endpoints and worker threads), one authenticator (a token obtained once serves
  every stream) and one `RequestGate`.
- `EnvironmentOnceSession`: the proxy and CA-bundle settings of the environment, read once per
  run and host instead of on every request.
- `RequestGate`: every request of a provider passes it before it is sent; it holds all of that
  provider's workers while a `Retry-After` pause runs and spaces requests under a rate cap.
- `retry_after_seconds` reads `Retry-After` (seconds or an HTTP date); `decoded_body` decodes a
  JSON body once and caches it on the response.
"""

from __future__ import annotations

import datetime
import email.utils
import os
import threading
import time
import typing as t
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec
import requests
from requests.adapters import HTTPAdapter
from requests.utils import resolve_proxies
from typing_extensions import override


class Authenticator(t.Protocol):
    """A requests auth callable. One holding a token also has `renew()`, which the streams
    call once when the server rejects a token we believed valid."""

    def __call__(self, request: requests.PreparedRequest, /) -> requests.PreparedRequest: ...


class RequestGate:
    """Holds one provider's requests during a Retry-After pause and under a rate cap."""

    def __init__(self, max_requests_per_second: float | None = None) -> None:
        self._interval = 1 / max_requests_per_second if max_requests_per_second else 0.0
        self._paused_until = 0.0
        self._next_slot = 0.0
        self._lock = threading.Lock()

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
                    return
            time.sleep(ready_at - now)


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


@dataclass
class ProviderTransport:
    """The session, authenticator and request gate shared by one provider's streams."""

    pool_size: int = 10
    max_requests_per_second: float | None = None
    session: requests.Session = field(init=False)
    gate: RequestGate = field(init=False)
    _authenticator: Authenticator | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.session = EnvironmentOnceSession()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.gate = RequestGate(self.max_requests_per_second)

    def authenticator(self, create: t.Callable[[], Authenticator]) -> Authenticator:
        """The provider's authenticator, built by `create` on first use."""
        with self._lock:
            if self._authenticator is None:
                self._authenticator = create()
            return self._authenticator

    def close(self) -> None:
        self.session.close()


_DECODED_BODY = "_tap_conversations_body"


def decoded_body(response: requests.Response) -> t.Any:
    """The response's JSON body, decoded once (in `validate_response`) and cached on it."""
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
