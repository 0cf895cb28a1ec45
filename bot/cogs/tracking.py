"""/orders, /cancel, /queue and the Cancel button."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import PhotogenBot
from bot.embeds import BLUE, STATUS_LABEL, human_eta
from bot.services import actions, group_privacy, member_orders
from bot.services import credits as credits_svc
from storage import lifecycle


class Orders(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot

    @app_commands.command(name="orders", description="Your orders and their status")
    @app_commands.guild_only()
    async def orders_cmd(self, interaction: discord.Interaction) -> None:
        # The member's own orders and the group pictures others made of them (bot/services/group_privacy.py).
        rows = await self.bot.run_blocking(
            group_privacy.orders_seen_by, self.bot.backends, interaction.user.id, 15
        )
        embed = discord.Embed(title="Your orders", colour=BLUE)
        if not rows:
            embed.description = "No orders yet. Start with /train."
        for o, pictured in rows:
            what = "group picture of you" if pictured else "training" if o.kind == "train" else "pictures"
            extra = f" · {o.step}/{o.total}" if o.total else ""
            embed.add_field(
                name=f"`{o.id}` · {what}",
                value=f"{STATUS_LABEL.get(o.status, o.status)}{extra} · <t:{int(o.created_ts)}:R>",
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="credits", description="Your credits in this server and their last movements")
    @app_commands.guild_only()
    async def credits_cmd(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None  # guild_only
        ledger = await self.bot.run_blocking(
            credits_svc.ledger_of, self.bot.backends, interaction.guild_id, interaction.user.id
        )
        embed = credits_svc.ledger_embed(ledger, title="Your credits", for_admin=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your orders (credits are refunded)")
    @app_commands.guild_only()
    @app_commands.describe(order="The order id (see /orders)")
    async def cancel(self, interaction: discord.Interaction, order: app_commands.Range[str, 1, 64]) -> None:
        await actions.cancel(self.bot, interaction, order)

    @cancel.autocomplete("order")
    async def cancel_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        rows = await self.bot.run_blocking(
            lifecycle.list_orders, self.bot.backends.engine, interaction.user.id, limit=25, active_only=True
        )
        return [
            app_commands.Choice(name=f"{o.id} · {o.kind} · {o.status}", value=o.id)
            for o in rows
            if current in o.id
        ][:25]

    @app_commands.command(name="queue", description="Where your orders stand in the queue, and the fleet")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        view = await self.bot.run_blocking(
            member_orders.queue_overview, self.bot.backends, interaction.user.id
        )
        embed = discord.Embed(title="Queue", colour=BLUE)
        embed.add_field(name="Training jobs waiting", value=str(view.train_waiting), inline=True)
        embed.add_field(name="Render jobs waiting", value=str(view.render_waiting), inline=True)
        embed.add_field(name="Agents online", value=str(view.agents_online), inline=True)
        for pos in view.mine:
            embed.add_field(
                name=f"`{pos.order_id}`",
                value=f"position {pos.position} · ETA {human_eta(pos.eta_s)} · "
                f"{STATUS_LABEL.get(pos.status, pos.status)}",
                inline=False,
            )
        if not view.mine:
            embed.description = "You have no open member_orders."
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Orders(bot))
