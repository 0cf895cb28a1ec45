"""Safe to post, the bot's half: each server's policy over the agents' verdicts (blocking; in a thread).

The agent checks every picture it stores (gpu_agent/agent/safety.py) and its done event carries one verdict
per picture; apply_event copies them into the outbox row. Before a result is posted, ``screen`` decides
picture by picture: a picture without a verdict is never posted; a flagged one is posted only where the
server's ``nsfw_policy`` is ``age_restricted_only`` and Discord marks the channel age-restricted (nsfw), and
never when the engine withheld it (the base model's own safety checker blanked it). A blocked picture's blob
is deleted, an audit row (order, score, reason, time) is written once, it is counted, and the post says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from bot.backends import Backends
from storage import order_store, read_session, transaction
from storage.models import NSFW_POLICIES
from storage.safety_log import blocked_count, record_blocked

log = logging.getLogger(__name__)

PICTURES_BLOCKED = Counter(
    "photogen_bot_pictures_blocked_total", "Pictures the safety check kept out of Discord", ["reason"]
)

POLICY_TEXT = {
    "block": "flagged pictures are never posted",
    "age_restricted_only": "flagged pictures are posted only in age-restricted channels",
}
_WHY = {
    "unchecked": "it could not be safety-checked",
    "withheld": "the model's own safety checker blocked it",
    "flagged": "the safety check flagged it and this server does not allow such pictures",
    "flagged_here": (
        "the safety check flagged it; this server shows such pictures only in age-restricted channels"
    ),
}


@dataclass
class Screened:
    shown: list[int] = field(default_factory=list)  # indexes into the row's image_keys that may be posted
    notices: list[str] = field(default_factory=list)  # one plain line per picture kept back


def policy_of(b: Backends, guild_id: object | None) -> str:
    """The guild's nsfw_policy; a DM (no guild) always blocks."""
    if guild_id is None:
        return "block"
    with read_session(b.engine) as s:
        return order_store.get_guild_settings(s, guild_id).nsfw_policy


def set_policy(b: Backends, guild_id: int, policy: str) -> None:
    if policy not in NSFW_POLICIES:
        raise ValueError(f"unknown policy {policy!r}")
    with transaction(b.engine) as s:
        order_store.update_guild_settings(s, guild_id, nsfw_policy=policy)


def blocked_in(b: Backends, guild_id: object | None) -> int:
    with read_session(b.engine) as s:
        return blocked_count(s, guild_id)


def screen(b: Backends, payload: dict[str, Any], order_id: str | None, *, channel_nsfw: bool) -> Screened:
    """Which of the row's pictures may be posted here; the others are deleted, recorded and counted."""
    keys: list[str] = list(payload.get("image_keys", []))
    verdicts = {v.get("key"): v for v in payload.get("safety", []) if isinstance(v, dict)}
    guild_id = payload.get("guild_id")
    policy = policy_of(b, guild_id)
    out = Screened()
    for i, key in enumerate(keys):
        verdict = verdicts.get(key)
        if verdict is None:
            reason = "unchecked"
        elif not verdict.get("flagged"):
            out.shown.append(i)
            continue
        elif verdict.get("withheld"):
            reason = "withheld"
        elif policy == "age_restricted_only" and channel_nsfw:
            out.shown.append(i)
            continue
        else:
            reason = "flagged_here" if policy == "age_restricted_only" else "flagged"
        _block(b, key, order_id, guild_id, float((verdict or {}).get("score") or 0.0), reason)
        out.notices.append(f"Picture {i + 1} was not posted: {_WHY[reason]}.")
    return out


def _block(b: Backends, key: str, order_id: str | None, guild_id: object, score: float, reason: str) -> None:
    audit_reason = "flagged" if reason.startswith("flagged") else reason
    with transaction(b.engine) as s:
        new = record_blocked(
            s, blob_key=key, order_id=order_id or "", guild_id=guild_id, score=score, reason=audit_reason
        )
    b.blobs.delete(key)  # idempotent: a retried post finds it gone
    if new:
        PICTURES_BLOCKED.labels(reason=audit_reason).inc()
        log.info("a picture of order %s was blocked (%s, score %.2f)", order_id, audit_reason, score)
