"""Rate limits the sim can impose: one-off injected 429s (RateLimitRule) and Discord-like buckets that count
requests per major parameter (channel, guild, webhook) in a sliding window and advertise X-RateLimit-* headers,
so a bot's own throttling meets the same signals it meets on Discord."""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

_MAJOR = re.compile(r"^/(?:channels|guilds)/(\d+)|^/(?:webhooks|interactions)/(\d+/[^/]+)")


def route_regex(route_pattern: str) -> re.Pattern[str]:
    """ "/channels/*/messages" → one path segment per `*`, any remainder for `**`."""
    parts = (
        ".*" if seg == "**" else "[^/]+" if seg == "*" else re.escape(seg) for seg in route_pattern.split("/")
    )
    return re.compile("/".join(parts))


def major_parameter(path: str) -> str:
    match = _MAJOR.match(path)
    return (match.group(1) or match.group(2)) if match else ""


@dataclass
class RateLimitRule:
    """A 429 the sim answers `times` more times for requests whose path (after /api/v10) matches `pattern`."""

    pattern: re.Pattern[str]
    retry_after: float
    times: int
    method: str | None = None
    is_global: bool = False
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method == method)
            and bool(self.pattern.fullmatch(path))
        )


@dataclass
class RateBucket:
    """At most `limit` matching requests per `per` seconds for each major parameter; more get a 429."""

    name: str
    pattern: re.Pattern[str]
    limit: int
    per: float
    method: str | None = None
    hits: int = 0  # 429s answered
    allowed: int = 0
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(self.pattern.fullmatch(path))

    def take(self, path: str) -> tuple[bool, int, float]:
        """(allowed, remaining after this request, seconds until the window frees a slot)."""
        now = time.monotonic()
        seen = self._seen.setdefault(major_parameter(path), deque())
        while seen and seen[0] <= now - self.per:
            seen.popleft()
        if len(seen) >= self.limit:
            self.hits += 1
            return False, 0, seen[0] + self.per - now
        seen.append(now)
        self.allowed += 1
        reset_after = seen[0] + self.per - now
        return True, self.limit - len(seen), reset_after
