"""Admin actions on the order store and the queues (blocking; called through bot.run_blocking)."""

from __future__ import annotations

from bot.backends import Backends
from bot.services import store


def audit(b: Backends, guild_id: int | None, actor_id: int, action: str, target: str, detail: str) -> None:
    store.audit(b, guild_id, actor_id, action, target, detail)


def update_guild(b: Backends, guild_id: int | None, **changes: object) -> None:
    store.update_guild(b, guild_id, **changes)


# A member's standing is per server: an admin's guild_id is always their own (the cog passes
# interaction.guild_id); standing.ALL_GUILDS (every server) is for the bot owners' cog only.


def set_banned(b: Backends, guild_id: int | str | None, user_id: int, banned: bool, reason: str) -> None:
    store.set_banned(b, guild_id, user_id, banned, reason)


def grant_credits(b: Backends, guild_id: int | None, user_id: int, amount: int) -> int:
    return store.grant_credits(b, guild_id, user_id, amount)


def set_quota(b: Backends, guild_id: int | None, user_id: int, daily: int | None) -> None:
    store.set_quota(b, guild_id, user_id, daily)


def edit_blocked_words(
    b: Backends, guild_id: int | None, *, add: str | None = None, remove: str | None = None
) -> bool:
    """Words are kept case-folded and stripped; returns False when removing a word that was not there."""
    rules = store.guild_rules(b, guild_id or 0)
    words = list(rules.blocked_words)
    if add is not None:
        word = add.strip().casefold()
        if word and word not in words:
            words.append(word)
    changed = True
    if remove is not None:
        word = remove.strip().casefold()
        changed = word in words
        words = [w for w in words if w != word]
    store.update_guild(b, guild_id, blocked_words=words)
    return changed


def edit_channels(
    b: Backends, guild_id: int | None, *, add: int | None = None, remove: int | None = None
) -> None:
    rules = store.guild_rules(b, guild_id or 0)
    channels = set(rules.allowed_channel_ids)
    if add is not None:
        channels.add(add)
    if remove is not None:
        channels.discard(remove)
    store.update_guild(b, guild_id, allowed_channel_ids=sorted(channels))
