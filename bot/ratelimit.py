"""Per-member sliding-window rate limit, in memory: a restart forgiving a burst is acceptable, and keeping it
off SQLite keeps the hot path of every command free of writes."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class RateLimiter:
    def __init__(self, per_minute: int, *, window_s: float = 60.0) -> None:
        self.limit = per_minute
        self.window_s = window_s
        self._hits: dict[int, deque[float]] = defaultdict(deque)

    def hit(self, user_id: int, now: float | None = None) -> float:
        """Record one command; return 0 if allowed, else the seconds until the member may try again."""
        now = time.monotonic() if now is None else now
        hits = self._hits[user_id]
        while hits and now - hits[0] >= self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return self.window_s - (now - hits[0])
        hits.append(now)
        return 0.0
