"""Per-member sliding-window rate limit, in memory: a restart forgiving a burst is acceptable, and keeping it
off SQLite keeps the hot path of every command free of writes.

Kept over discord.py's ``app_commands.checks.cooldown`` (docs/ARCHITECTURE.md): one budget covers every command
and the result buttons (component interactions never run app-command checks), and the window slides instead of
resetting (a fixed window lets twice the rate through across its edge). The key is the member alone, across
servers: the limit protects the bot, which all servers share. Daily quotas are another matter, kept in SQLite
(storage/standing.py).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Hashable


class RateLimiter:
    def __init__(self, per_minute: int, *, window_s: float = 60.0) -> None:
        self.limit = per_minute
        self.window_s = window_s
        self._hits: dict[Hashable, deque[float]] = defaultdict(deque)
        self._next_sweep = 0.0

    def __len__(self) -> int:
        """Members currently tracked."""
        return len(self._hits)

    def hit(self, user_id: Hashable, now: float | None = None) -> float:
        """Record one command; return 0 if allowed, else the seconds until the member may try again."""
        now = time.monotonic() if now is None else now
        if now >= self._next_sweep:
            self._forget_idle(now)
        hits = self._hits[user_id]
        while hits and now - hits[0] >= self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return self.window_s - (now - hits[0])
        hits.append(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Once a window, drop the members with no hit inside it: memory follows the active members, not
        everyone who ever ran a command."""
        for user_id in [u for u, hits in self._hits.items() if not hits or now - hits[-1] >= self.window_s]:
            del self._hits[user_id]
        self._next_sweep = now + self.window_s
