"""HTTP plumbing one provider's streams share during a run.

- `ProviderTransport`: one pooled `requests.Session` (keep-alive connections reused across list
  and detail endpoints and worker threads), one authenticator (a token obtained once serves
  every stream) and one `RequestGate`.
- `RequestGate`: every request of a provider passes it before it is sent; it holds all of that
  provider's workers while a `Retry-After` pause runs and spaces requests under a rate cap.
- `retry_after_seconds` reads `Retry-After` (seconds or an HTTP date); `decoded_body` decodes a
  JSON body once and caches it on the response.
"""

from __future__ import annotations

import datetime
import email.utils
import threading
import time
import typing as t
from dataclasses import dataclass, field

import msgspec
import requests
from requests.adapters import HTTPAdapter


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
        self.session = requests.Session()
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
