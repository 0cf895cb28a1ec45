"""/forget-me: delete everything the studio holds about a member, after an explicit confirmation."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import PhotogenBot
from bot.embeds import ORANGE
from bot.gate import Access, access
from bot.periodic import periodic, start, stop
from bot.services import deletion
from bot.views import forget_view


class Privacy(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        start(self.resweep, seconds=deletion.sweep_interval_s(self.bot.backends))

    async def cog_unload(self) -> None:
        await stop(self.resweep)

    @periodic("re-sweep of deleted files")  # a failed round is retried next round: the records stay
    async def resweep(self) -> None:
        """Deletions repeated once in-flight GPU work has settled (bot/services/deletion.py); the records are
        in the blob store, so sweeps scheduled before a restart run after it."""
        await self.bot.run_blocking(deletion.run_due_sweeps, self.bot.backends)

    @app_commands.command(
        name="forget-me",
        description="Delete your photos, models, pictures and records",
        # Open to everyone, anywhere: a banned or rate-limited member may still have their data deleted.
        extras=access(Access.ANYONE),
    )
    async def forget_me(self, interaction: discord.Interaction) -> None:
        embed = discord.Embed(
            title="Delete everything?",
            description="This deletes your uploaded photos, trained models, generated pictures and orders, in "
            "every server. Open orders are cancelled. It cannot be undone. Kept, without any personal data: "
            "your credit balance, today's order count and any ban in each server (forgetting never refills "
            "them).",
            colour=ORANGE,
        )
        await interaction.response.send_message(
            embed=embed, view=forget_view(interaction.user.id), ephemeral=True
        )


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Privacy(bot))
