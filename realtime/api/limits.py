"""Per-user rate limit on task creation (a sliding window held in memory)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from realtime.errors import RateLimitedError


class RateLimiter:
    """At most `limit` units per `window_s` seconds per key; answers 429 past that.

    One process's view: behind several API processes each enforces its own share.
    """

    def __init__(self, limit: int, window_s: float, clock: object = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._spent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, units: int = 1) -> None:
        now: float = self._clock()  # type: ignore[operator]
        with self._lock:
            spent = self._spent.setdefault(key, deque())
            while spent and spent[0] <= now - self.window_s:
                spent.popleft()
            if len(spent) + units > self.limit:
                wait = spent[0] + self.window_s - now if spent else self.window_s
                raise RateLimitedError(
                    f"at most {self.limit} task creations per {self.window_s:g} s; "
                    f"{len(spent)} used, {units} asked",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            spent.extend([now] * units)
