"""A token bucket per provider: the rate limit an API enforces without documenting it.

Each request takes one token; tokens come back at `rate` per second up to `burst`. A request
finding the bucket empty is refused with `429` and `Retry-After: 1`. With `headers`, every
answer also says what is left (IETF draft names: `RateLimit-Limit` = the burst,
`RateLimit-Remaining` = whole tokens left, `RateLimit-Reset` = whole seconds until the bucket
is full again).
"""

from __future__ import annotations

import math
import threading
import time


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.refused = 0
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self, now: float) -> tuple[bool, dict[str, str]]:
        """Whether a request arriving at `now` may pass, and the headers describing the bucket."""
        with self._lock:
            self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
            self._at = max(self._at, now)
            allowed = self.tokens >= 1
            if allowed:
                self.tokens -= 1
            else:
                self.refused += 1
            headers = {
                "RateLimit-Limit": str(math.floor(self.burst)),
                "RateLimit-Remaining": str(math.floor(self.tokens)),
                "RateLimit-Reset": str(math.ceil((self.burst - self.tokens) / self.rate)),
            }
        return allowed, headers
