"""One provider's request gate: finds the API's rate limit and stays under it.

Every request of a provider passes `RequestGate.wait_turn` before it is sent and reports its
answer to `RequestGate.finished`. The gate holds requests:

- during a provider-wide pause: a `Retry-After` on a 429, or on 503s from several workers at
  once (one 503 is one backend's fault: only the request that got it waits, `transport`);
- to keep under the rate found (AIMD): a 429 sets the allowed rate from what the API accepted
  between two refusals (the bucket was empty at both, so what it let through in between is its
  rate), and halves the allowed concurrency; each accepted request then raises both a little,
  never above `max_concurrency` or `max_requests_per_second`, and concurrency stops climbing
  while latency grows (a server queueing);
- when the API says how much is left (`RateLimit-Remaining`/`RateLimit-Reset`, the IETF draft,
  or `X-RateLimit-*`): no more requests than remain, until the reset.

Every wait ends at once with `Interrupted` when `stopping` is set. Tests replace `now` and
`sleep`, so that none waits out a real backoff or Retry-After.
"""

from __future__ import annotations

import collections
import math
import threading
import time
import typing as t

from tap_conversations.errors import Interrupted
from tap_conversations.settings import DEFAULT_MAX_CONCURRENCY

if t.TYPE_CHECKING:
    import requests

TOO_MANY_REQUESTS, SERVER_ERROR, SERVICE_UNAVAILABLE = 429, 500, 503
BACK_OFF = 0.5  # concurrency is multiplied by this on a limit
RATE_MARGIN = 0.97  # the rate kept is this share of the rate measured between two refusals
RATE_STEP = 0.01  # requests/s added per accepted request: +1% of the rate per second
MIN_RATE = 0.2  # requests/s
BURST_SECONDS = 1.0  # requests saved up while held back, in seconds of the found rate
OVERLOADED_WORKERS = 3  # 503s from this many workers within `OVERLOAD_WINDOW` s: provider-wide
OVERLOAD_WINDOW = 1.0
QUEUEING = 1.5  # latency above this multiple of the fastest seen: concurrency stops climbing
EPOCH_AFTER = 1e8  # an `X-RateLimit-Reset` above this is a Unix time, not seconds from now


class RequestGate:
    """Holds one provider's requests to what its API allows; shared by all its workers."""

    now = staticmethod(time.monotonic)

    def __init__(
        self,
        max_requests_per_second: float | None = None,
        stopping: threading.Event | None = None,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.stopping = stopping or threading.Event()
        self.rate_cap = float(max_requests_per_second) if max_requests_per_second else None
        self.max_concurrency = max(1, max_concurrency)
        self.concurrency = float(self.max_concurrency)  # allowed now
        self.rate: float | None = None  # requests/s found; None until the API refused one
        self.refusals = 0  # 429s and provider-wide 503s
        self.paced_by_headers = False
        self.in_flight = 0
        self._lock = threading.Condition()
        self._paused_until = self._next_slot = 0.0
        self._tokens, self._filled_at = 0.0, self.now()  # of the found rate (`_refill`)
        self._started: float | None = None  # when the first request was sent
        self._accepted = 0  # answered without a refusal
        self._refused_sent_at: float | None = None  # when the last refused request was sent
        self._accepted_since_refusal = 0  # accepted requests sent after it
        self._cut_at = -math.inf  # when the last refusal cut rate and concurrency
        self._fastest = math.inf  # latency, s
        self._latency = 0.0  # moving average, s
        self._budget: float | None = None  # requests the API's headers still allow
        self._budget_at = self._budget_interval = 0.0  # when one more is back, and how often
        self._budget_sent_at = -math.inf  # when the request the budget was read from was sent
        self._recent_503s: collections.deque[tuple[float, int]] = collections.deque()
        self._recent_accepted: collections.deque[float] = collections.deque()

    # Sending -------------------------------------------------------------------------------

    def wait_turn(self) -> float:
        """Block until this provider may send its next request; the time it may be sent.
        The caller reports the answer (or its absence) to `finished` with that time."""
        while True:
            with self._lock:
                if self.stopping.is_set():
                    raise Interrupted
                now = self.now()
                ready_at = max(self._paused_until, self._next_slot)
                if self.rate is not None:
                    self._refill(now)
                    ready_at = max(ready_at, now + (1 - self._tokens) / self.rate)
                if self._budget is not None and self._budget < 1:
                    if now >= self._budget_at:  # one more is back
                        self._budget, self._budget_at = 1.0, now + self._budget_interval
                    ready_at = max(ready_at, self._budget_at if self._budget < 1 else now)
                if now >= ready_at and self.in_flight < int(self.concurrency):
                    if self.rate_cap:
                        self._next_slot = max(self._next_slot, now) + 1 / self.rate_cap
                    self._tokens -= 1
                    if self._budget is not None:
                        self._budget -= 1
                    self.in_flight += 1
                    if self._started is None:
                        self._started = now
                    return now
                if now >= ready_at:  # every allowed worker is busy: wait for one to finish
                    self._lock.wait(0.05)
                    continue
            self.sleep(ready_at - now)

    def _refill(self, now: float) -> None:
        """The found rate's tokens: one per request, back at that rate, one second's worth
        kept at most (what the API's own bucket refilled while every request waited)."""
        if self.rate is not None:
            elapsed = max(0.0, now - self._filled_at)
            burst = max(1.0, self.rate * BURST_SECONDS)
            self._tokens = min(burst, self._tokens + elapsed * self.rate)
        self._filled_at = now

    def allowed_rate(self) -> float | None:
        """Requests/s allowed now: the rate found, never above `max_requests_per_second`."""
        rates = [r for r in (self.rate, self.rate_cap) if r]
        return min(rates) if rates else None

    def pause(self, seconds: float) -> None:
        """Hold every request of this provider for `seconds` from now."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.now() + seconds)

    def sleep(self, seconds: float) -> None:
        """Sleep, unless the run is stopping (then raise `Interrupted` at once)."""
        if self.stopping.wait(max(seconds, 0.0)):
            raise Interrupted

    # Answers -------------------------------------------------------------------------------

    def finished(self, sent_at: float, response: requests.Response | None) -> bool:
        """Account for one request sent at `sent_at` (`response` is None when none came).
        True when its answer speaks for the whole provider: a 429, or a 503 while other
        workers get 503s too; then the caller pauses the provider (`pause`)."""
        status = response.status_code if response is not None else None
        with self._lock:
            now = self.now()
            self.in_flight -= 1
            self._lock.notify()
            if response is not None and sent_at >= self._budget_sent_at:
                self._read_headers(response, now)
                self._budget_sent_at = sent_at  # an answer to an older request is stale
            if status == SERVICE_UNAVAILABLE and self._overloaded(now):
                status = TOO_MANY_REQUESTS
            if status == TOO_MANY_REQUESTS:
                self._refused(sent_at, now)
                return True
            if status is not None and status < SERVER_ERROR:  # an answer, not a fault
                self._accepted_one(sent_at, now)
            return False

    def _overloaded(self, now: float) -> bool:
        """Whether 503s came from several workers within a second (this one included)."""
        self._recent_503s.append((now, threading.get_ident()))
        while self._recent_503s[0][0] < now - OVERLOAD_WINDOW:
            self._recent_503s.popleft()
        workers = {worker for _, worker in self._recent_503s}
        return len(workers) >= min(OVERLOADED_WORKERS, self.max_concurrency) > 1

    def _refused(self, sent_at: float, now: float) -> None:
        self.refusals += 1
        if sent_at >= self._cut_at:  # not one of those already in flight at the last cut
            if self._refused_sent_at is not None and sent_at - self._refused_sent_at > 0.1:
                # The bucket was empty at both refusals: what it let through between is its rate.
                found = self._accepted_since_refusal / (sent_at - self._refused_sent_at)
            else:
                # First refusal: what was accepted, over the time so far plus one second for the
                # burst a bucket usually starts with; the next refusal measures it.
                found = self._accepted / (now - (self._started or now) + 1.0)
            if found > 0:  # else nothing was accepted yet: the next refusal will tell
                rate = self.rate if self.rate is not None else math.inf
                self.rate = max(MIN_RATE, min(rate, found) * RATE_MARGIN)
            self.concurrency = max(1.0, self.concurrency * BACK_OFF)
            self._cut_at = now
            self._tokens, self._filled_at = 0.0, now  # the API's bucket is empty now
        if self._refused_sent_at is None or sent_at >= self._refused_sent_at:
            self._refused_sent_at = sent_at
            self._accepted_since_refusal = 0

    def _accepted_one(self, sent_at: float, now: float) -> None:
        self._accepted += 1
        if self._refused_sent_at is not None and sent_at > self._refused_sent_at:
            self._accepted_since_refusal += 1
        self._recent_accepted.append(now)
        while self._recent_accepted[0] < now - 5.0:
            self._recent_accepted.popleft()
        latency = now - sent_at
        self._fastest = min(self._fastest, latency)
        self._latency = latency if not self._latency else 0.9 * self._latency + 0.1 * latency
        if self.rate is not None:
            self.rate += RATE_STEP
            if self.rate_cap and self.rate >= self.rate_cap:
                self.rate = None  # the cap holds it anyway
        queueing = self._latency > QUEUEING * max(self._fastest, 0.005)
        if self.concurrency < self.max_concurrency and not queueing:
            self.concurrency = min(self.max_concurrency, self.concurrency + 1 / self.concurrency)

    def _read_headers(self, response: requests.Response, now: float) -> None:
        """Hold back when the API says no more requests remain than are in flight (a
        fixed-window API is then asked a little early, and answers 429 until its reset)."""
        headers = response.headers
        remaining = _number(
            headers.get("RateLimit-Remaining") or headers.get("X-RateLimit-Remaining")
        )
        if remaining is None:
            return
        reset = _number(headers.get("RateLimit-Reset") or headers.get("X-RateLimit-Reset"))
        if reset is not None and reset > EPOCH_AFTER:
            reset -= time.time()
        # What may still be sent: what remains, less what is already on its way.
        self._budget = remaining - self.in_flight
        if self._budget >= 1:
            return
        self.paced_by_headers = True
        limit = _number(headers.get("RateLimit-Limit") or headers.get("X-RateLimit-Limit"))
        if reset is None or reset <= 0:
            self._budget_interval = 1.0
        elif limit is not None and limit > remaining:
            # What is missing comes back evenly until the reset (a token bucket).
            self._budget_interval = reset / (limit - remaining)
        else:
            self._budget_interval = reset
        self._budget_at = now + self._budget_interval * (1 - self._budget)

    # Reporting -----------------------------------------------------------------------------

    def holding_back(self) -> str | None:
        """`about 19 requests/s allowed by the API, 4 in flight`, when a limit was met."""
        with self._lock:
            if self.rate is None and not self.paced_by_headers and not self.refusals:
                return None
            rate = self.rate
            if rate is None and self._recent_accepted:
                span = max(self.now() - self._recent_accepted[0], 1.0)
                rate = len(self._recent_accepted) / span
            allowed = f"about {rate or 0:.0f} requests/s allowed by the API"
            return f"{allowed}, {self.in_flight} in flight"

    def found(self) -> str | None:
        """For the summary: the rate kept to, when a limit was met."""
        with self._lock:
            if self.rate is None and not self.paced_by_headers and not self.refusals:
                return None
            elapsed = max(self.now() - (self._started or 0.0), 1e-9)
            kept = self.rate if self.rate is not None else self._accepted / elapsed
            how = "the API's rate-limit headers" if self.paced_by_headers else "its refusals"
            return (
                f"rate limit met: about {kept:.0f} requests/s allowed (found from {how}), "
                f"{self.refusals} refused"
            )


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
