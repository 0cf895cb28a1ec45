"""/forget-me: delete everything the studio holds about a member, after an explicit confirmation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import metrics
from bot.app import PhotogenBot
from bot.embeds import GREEN, ORANGE
from bot.errors import NotAllowed
from bot.services import deletion, member_orders
from bot.views import forget_view

log = logging.getLogger(__name__)


class Privacy(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        self._sweeper: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self._sweeper = asyncio.create_task(self._run_sweeps(), name="photogen-resweeps")

    async def cog_unload(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _run_sweeps(self) -> None:
        """Deletions repeated once in-flight GPU work has settled (bot/services/deletion.py); the records are
        in the blob store, so sweeps scheduled before a restart run after it."""
        interval = deletion.sweep_interval_s(self.bot.backends)
        while True:
            try:
                await self.bot.run_blocking(deletion.run_due_sweeps, self.bot.backends)
            except Exception:  # the next round retries; the records stay until swept
                log.exception("re-sweep of deleted files failed")
            await asyncio.sleep(interval)

    @app_commands.command(name="forget-me", description="Delete your photos, models, pictures and records")
    async def forget_me(self, interaction: discord.Interaction) -> None:
        metrics.COMMANDS.labels(command="forget-me").inc()
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

    async def forget_from_button(self, interaction: discord.Interaction, user_id: int) -> None:
        if interaction.user.id != user_id:
            raise NotAllowed("Only the member who asked can confirm this.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        receipt = await self.bot.run_blocking(member_orders.forget_user, self.bot.backends, user_id)
        embed = discord.Embed(title="Deleted", colour=GREEN)
        for what, n in receipt.items():
            embed.add_field(name=what.replace("_", " "), value=str(n), inline=True)
        await interaction.followup.send(embed=embed, ephemeral=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Privacy(bot))
