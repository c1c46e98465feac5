"""Per-key token buckets in memory, for the sign-up form's per-address and per-client limits.

The buckets live in one process: `newsletter serve` runs one process (with threads), so
that is the whole server.  Several processes behind a balancer would each allow the full
rate; put the limit in the front web server then.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``burst`` requests at once, then one every ``every`` seconds."""

    burst: int
    every: float


class TokenBuckets:
    """``allow(key)`` takes a token from ``key``'s bucket; False when it is empty.

    At most ``max_keys`` buckets are kept: past that the least recently used are dropped
    (a dropped bucket starts full again, so a flood of distinct keys cannot exhaust
    memory, and at worst costs the limit for keys not seen for a while).
    """

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ):
        self.rate = rate
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        if self.rate.burst <= 0:
            return True  # no limit configured
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.rate.burst), now))
            if self.rate.every > 0:
                tokens = min(float(self.rate.burst), tokens + (now - at) / self.rate.every)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return allowed
