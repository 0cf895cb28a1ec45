"""Who may run which slash command, declared once per command or group and enforced in one place: the command
tree's ``interaction_check``, which discord.py runs before every application command (before its checks, its
argument conversion and its callback). The same check counts every command once in ``COMMANDS``.

A command declares its access with ``extras=access(Access.ADMIN)`` (a GroupCog with ``group_extras=…``);
the nearest declaration up the command's parents wins, and a command that declares nothing is a member
command, so a new command is gated without anyone remembering to. Buttons are not app commands: their handlers
(bot/services/actions.py) call the same gates.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import metrics
from bot.checks import GuildRules, check_not_paused, is_bot_owner, require_admin, require_guild
from bot.errors import NotAllowed, UserFacingError
from bot.services import member_orders

if TYPE_CHECKING:
    from bot.app import PhotogenBot

RULES = "photogen.rules"  # interaction.extras key: the guild's rules the gate loaded


class Access(StrEnum):
    MEMBER = "member"  # a server, an allowed channel, the rate limit, not banned (the default)
    ADMIN = "admin"  # a server, and this server's Photogen admin (any channel, no rate limit)
    ADMIN_OR_OWNER = "admin_or_owner"  # as ADMIN, or a bot owner (whose view then spans every server)
    OWNER = "owner"  # a bot owner (BOT_OWNER_IDS)
    ANYONE = "anyone"  # no gate: /forget-me stays open to a banned member, in any channel or a DM


def access(level: Access) -> dict[str, Any]:
    """``extras`` for app_commands.command / Group / GroupCog(group_extras=…)."""
    return {"access": level}


def access_of(command: app_commands.Command[Any, ..., Any] | app_commands.Group) -> Access:
    node: Any = command
    while node is not None:
        declared = node.extras.get("access")
        if declared is not None:
            return Access(declared)
        node = node.parent
    return Access.MEMBER


class Refusal(app_commands.CheckFailure):
    """A gate's refusal on its way to the tree's error handler, which answers the member with ``original``."""

    def __init__(self, original: UserFacingError) -> None:
        super().__init__(original.message)
        self.original = original


async def admit(bot: PhotogenBot, interaction: discord.Interaction, level: Access) -> GuildRules | None:
    """Run the gate of ``level``; returns the guild's rules (None outside a server or for ANYONE/OWNER)."""
    if level is Access.ANYONE:
        return None
    if level is Access.MEMBER:
        return await member_orders.gate_member(bot, interaction)
    owner = is_bot_owner(bot.settings, interaction.user.id)
    if level is Access.OWNER:
        if not owner:
            raise NotAllowed("Only the bot's owners can do that.")
        return None
    rules = await member_orders.load_rules(bot, require_guild(interaction))
    if not (level is Access.ADMIN_OR_OWNER and owner):
        require_admin(interaction, rules)
    return rules


class GatedTree(app_commands.CommandTree["PhotogenBot"]):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Autocomplete answers list only the caller's own orders and models: no gate, no count per keystroke.
        if interaction.type is not discord.InteractionType.application_command:
            return True
        command = interaction.command
        if not isinstance(command, app_commands.Command):
            return True  # unknown to this tree: discord.py reports it
        metrics.COMMANDS.labels(command=command.qualified_name).inc()
        try:
            interaction.extras[RULES] = await admit(self.client, interaction, access_of(command))
        except UserFacingError as err:
            raise Refusal(err) from err
        return True


def rules_of(interaction: discord.Interaction) -> GuildRules:
    """The rules the gate loaded for this command (a MEMBER or ADMIN command inside a server)."""
    rules = interaction.extras.get(RULES)
    if rules is None:
        raise RuntimeError(f"no gate ran for {getattr(interaction.command, 'qualified_name', '?')}")
    return rules


def order_rules(interaction: discord.Interaction, *, text: str | None = None) -> GuildRules:
    """A new order on top of the member gate: the pause switch and the server's blocked words (limits and
    credits are re-checked atomically when the order row is written)."""
    rules = rules_of(interaction)
    check_not_paused(rules)
    if text is not None:
        member_orders.refuse_blocked_words(text, rules)
    return rules
