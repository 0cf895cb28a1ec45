"""The gate every command passes: allowed channel, ban, pause, rate limit — and the admin check.

The rules come from the guild's settings row (read off the loop). Admin commands are hidden with
default_permissions, but Discord lets a server owner change that, so the bot re-checks in code: the member must
hold the guild's configured admin role, or (none configured) Manage Server, or own the guild.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import discord

from bot.errors import Busy, NotAllowed
from bot.wording import find_word
from storage.settings import Settings


@dataclass(frozen=True)
class GuildRules:
    guild_id: int
    admin_role_id: int | None = None
    allowed_channel_ids: frozenset[int] = field(default_factory=frozenset)
    blocked_words: tuple[str, ...] = ()
    daily_quota: int | None = None
    max_concurrent_orders: int | None = None
    paused: bool = False
    admin_log_channel_id: int | None = None


def require_guild(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:
        raise NotAllowed("Photogen works inside a server, not in direct messages.")
    return interaction.guild_id


def check_channel(interaction: discord.Interaction, rules: GuildRules) -> None:
    if rules.allowed_channel_ids and interaction.channel_id not in rules.allowed_channel_ids:
        shown = ", ".join(f"<#{c}>" for c in sorted(rules.allowed_channel_ids)[:5])
        raise NotAllowed(f"Photogen can't be used in this channel. Try {shown}.")


def check_not_paused(rules: GuildRules) -> None:
    if rules.paused:
        raise Busy(
            "The studio is paused by the admins: no new orders for now. Your existing orders carry on."
        )


def is_admin(interaction: discord.Interaction, rules: GuildRules) -> bool:
    member = interaction.user
    if not isinstance(member, discord.Member):
        return False
    if interaction.guild is not None and interaction.guild.owner_id == member.id:
        return True
    if rules.admin_role_id is not None:
        return any(role.id == rules.admin_role_id for role in member.roles)
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild


def is_bot_owner(settings: Settings, user_id: int) -> bool:
    """One of the bot's owners (BOT_OWNER_IDS): they alone see global figures (cost, dead letters, hosts) and
    take actions that cross servers (/owner, every server's dead letters, command sync)."""
    return int(user_id) in settings.bot_owner_ids


def require_admin(interaction: discord.Interaction, rules: GuildRules) -> None:
    if not is_admin(interaction, rules):
        raise NotAllowed("Only this server's Photogen admins can do that.")


def find_blocked_word(text: str, blocked: tuple[str, ...]) -> str | None:
    """The first blocked word ``text`` contains as a word, seen through look-alikes, invisible characters and
    separators (bot.wording.find_word)."""
    return find_word(text, blocked)
