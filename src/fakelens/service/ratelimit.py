"""Token-bucket rate limits per API key (in memory, thread-safe)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """``per_minute`` requests per key on average, bursts of up to ``burst``; 0 per minute: no limit."""

    def __init__(self, per_minute: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def refund(self, key: str) -> None:
        """Give back the token of a request that was refused before any work (a bad form, a full queue)."""
        if self.rate <= 0:
            return
        with self._lock:
            if key in self._buckets:
                tokens, last = self._buckets[key]
                self._buckets[key] = (min(float(self.burst), tokens + 1.0), last)

    def headers(self, key: str) -> dict[str, str]:
        """``RateLimit-*`` headers for ``key`` (IETF draft): the burst, the requests left now and the seconds
        until the bucket is full again; none without a limit."""
        if self.rate <= 0:
            return {}
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return {
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(math.floor(tokens)),
            "RateLimit-Reset": str(math.ceil((self.burst - tokens) / self.rate)),
        }

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """Whole seconds for a ``Retry-After`` header (at least 1)."""
        return max(1, math.ceil(wait_s))
