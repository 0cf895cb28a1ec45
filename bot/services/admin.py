"""Server settings, members' standing and the audit log, as admins change them (blocking; called through
bot.run_blocking)."""

from __future__ import annotations

from typing import Any

from bot.backends import Backends
from bot.checks import GuildRules
from storage import credits, order_store, read_session, standing, transaction


def guild_rules(b: Backends, guild_id: int) -> GuildRules:
    """The server's settings as the bot's checks read them."""
    with read_session(b.engine) as s:
        g = order_store.get_guild_settings(s, guild_id)
        return GuildRules(
            guild_id=int(guild_id),
            admin_role_id=int(g.admin_role_id) if g.admin_role_id else None,
            allowed_channel_ids=frozenset(int(c) for c in g.allowed_channel_ids),
            blocked_words=tuple(g.blocked_words),
            daily_quota=g.daily_quota,
            max_concurrent_orders=g.max_concurrent_orders,
            paused=g.paused,
            admin_log_channel_id=int(g.admin_log_channel_id) if g.admin_log_channel_id else None,
        )


def audit(b: Backends, guild_id: int | None, actor_id: int, action: str, target: str, detail: str) -> None:
    with transaction(b.engine) as s:
        order_store.audit(
            s, action=action, guild_id=guild_id, actor_id=actor_id, target=target, detail=detail or None
        )


def update_guild(b: Backends, guild_id: int | None, **changes: Any) -> None:
    with transaction(b.engine) as s:
        order_store.update_guild_settings(s, guild_id, **changes)


# A member's standing is per server (storage.standing): an admin's guild_id is always their own (the cog passes
# interaction.guild_id); standing.ALL_GUILDS (every server) is for the bot owners' cog only.


def ban_reason(b: Backends, guild_id: int | str | None, user_id: int) -> str | None:
    """None when the member may use the bot in that server; the ban reason ('' if none given) when banned
    there or everywhere."""
    with read_session(b.engine) as s:
        return standing.ban_reason(s, guild_id, user_id)


def set_banned(b: Backends, guild_id: int | str | None, user_id: int, banned: bool, reason: str) -> None:
    """Never touches credits: a member banned before ever ordering still gets the starting credits later."""
    with transaction(b.engine) as s:
        standing.set_ban(s, guild_id, user_id, banned, reason or None)


def grant_credits(
    b: Backends, guild_id: int | None, user_id: int, amount: int, *, actor_id: int, reason: str | None = None
) -> int:
    """A grant entry in the member's ledger in that server (the admin's own); returns the balance."""
    with transaction(b.engine) as s:
        return credits.grant(s, guild_id, user_id, amount, actor=actor_id, reason=reason)


def set_quota(b: Backends, guild_id: int | None, user_id: int, daily: int | None) -> None:
    with transaction(b.engine) as s:
        standing.set_quota(s, guild_id, user_id, daily)


def edit_blocked_words(
    b: Backends, guild_id: int | None, *, add: str | None = None, remove: str | None = None
) -> bool:
    """Words are kept case-folded and stripped; returns False when removing a word that was not there."""
    rules = guild_rules(b, guild_id or 0)
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
    update_guild(b, guild_id, blocked_words=words)
    return changed


def edit_channels(
    b: Backends, guild_id: int | None, *, add: int | None = None, remove: int | None = None
) -> None:
    rules = guild_rules(b, guild_id or 0)
    channels = set(rules.allowed_channel_ids)
    if add is not None:
        channels.add(add)
    if remove is not None:
        channels.discard(remove)
    update_guild(b, guild_id, allowed_channel_ids=sorted(channels))
