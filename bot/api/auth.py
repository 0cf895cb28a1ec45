"""Who is calling: the bearer key (storage.api_store: hashed, revocable, scoped) and its rate limit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from bot.ratelimit import RateLimiter
from storage import api_store

from .errors import ApiError

#: How long a checked key is trusted without reading the store again: a revocation (`photogen api-keys revoke`,
#: another process) takes effect within this time. The status poll is the hot path (bench/api.py).
KEY_CACHE_S = 1.0


@dataclass
class KeyCache:
    entries: dict[str, tuple[float, api_store.KeyView | None]] = field(default_factory=dict)

    def lookup(self, engine: Engine, token: str) -> api_store.KeyView | None:
        now = time.monotonic()
        hit = self.entries.get(token)
        if hit is not None and now - hit[0] < KEY_CACHE_S:
            return hit[1]
        if len(self.entries) > 10_000:  # a flood of made-up keys: start again rather than grow
            self.entries.clear()
        key = api_store.authenticate(engine, token)
        self.entries[token] = (now, key)
        return key


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]


def caller_of(
    engine: Engine, limiter: RateLimiter, authorization: str | None, scope: str, keys: KeyCache
) -> Caller:
    """The key behind an ``Authorization: Bearer …`` header, allowed ``scope`` and inside its rate limit."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "Send your API key as `Authorization: Bearer <key>`.")
    key = keys.lookup(engine, token.strip())
    if key is None:
        raise ApiError(401, "invalid_key", "That API key is unknown or revoked.")
    wait = limiter.hit(key.id)
    if wait:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests with this key; try again in {int(wait) + 1} s.",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    if scope not in key.scopes:
        raise ApiError(403, "missing_scope", f"This key lacks the `{scope}` scope.")
    return Caller(key.tenant_id, key.id, frozenset(key.scopes))
