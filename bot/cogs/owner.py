"""/owner …: the only actions that cross servers (a ban everywhere, a purge everywhere), for the bot's owners
(BOT_OWNER_IDS) alone. A server's admins act on their own server only (/admin).

Hidden by default_permissions like /admin and re-checked by the command tree's gate (bot/gate.py); everyone
else is refused ephemerally. Every action is written to the audit log (guild None: it concerns every server;
the detail names the server it was run from).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import PhotogenBot
from bot.gate import Access, access
from bot.services import admin as admin_svc
from bot.services.purge import purge_member
from storage.standing import ALL_GUILDS


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Owner(
    commands.GroupCog,
    group_name="owner",
    group_description="Photogen bot owners: every server",
    group_extras=access(Access.OWNER),  # the tree's gate: BOT_OWNER_IDS only (bot/gate.py)
):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        super().__init__()

    async def _done(
        self, interaction: discord.Interaction, action: str, member: discord.User, detail: str, reply: str
    ) -> None:
        """Audit row first (the record must exist even if Discord is down), then the ephemeral answer."""
        where = f"from server {interaction.guild_id}" + (f": {detail}" if detail else "")
        await self.bot.run_blocking(
            admin_svc.audit,
            self.bot.backends,
            None,
            interaction.user.id,
            f"owner {action}",
            f"<@{member.id}>",
            where,
        )
        if interaction.response.is_done():
            await interaction.followup.send(reply, ephemeral=True)
        else:
            await interaction.response.send_message(reply, ephemeral=True)

    @app_commands.command(name="ban", description="Stop a member from using Photogen in every server")
    async def ban(
        self,
        interaction: discord.Interaction,
        member: discord.User,
        reason: app_commands.Range[str, 0, 200] = "",
    ) -> None:
        await self.bot.run_blocking(
            admin_svc.set_banned, self.bot.backends, ALL_GUILDS, member.id, True, reason
        )
        await self._done(interaction, "ban", member, reason, f"<@{member.id}> is banned in every server.")

    @app_commands.command(name="unban", description="Lift a ban everywhere (a server's own ban stays)")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.bot.run_blocking(admin_svc.set_banned, self.bot.backends, ALL_GUILDS, member.id, False, "")
        await self._done(
            interaction,
            "unban",
            member,
            "",
            f"<@{member.id}>'s ban in every server is lifted (bans by a server's admins stay).",
        )

    @app_commands.command(name="purge", description="Delete everything of a member in every server")
    async def purge(self, interaction: discord.Interaction, member: discord.User) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        receipt = await self.bot.run_blocking(
            purge_member, self.bot.backends, member.id, ALL_GUILDS, by="owner purge"
        )
        detail = ", ".join(f"{k}={v}" for k, v in receipt.items())
        await self._done(interaction, "purge", member, detail, f"Purged <@{member.id}> everywhere: {detail}")


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Owner(bot))
