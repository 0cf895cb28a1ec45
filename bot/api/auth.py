"""Who is calling: the bearer key (storage.api_store: hashed, revocable, scoped) and its rate limit."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from bot.ratelimit import RateLimiter
from storage import api_store

from .errors import ApiError


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    key_id: str
    scopes: frozenset[str]


def caller_of(engine: Engine, limiter: RateLimiter, authorization: str | None, scope: str) -> Caller:
    """The key behind an ``Authorization: Bearer …`` header, allowed ``scope`` and inside its rate limit."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "Send your API key as `Authorization: Bearer <key>`.")
    key = api_store.authenticate(engine, token.strip())
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
