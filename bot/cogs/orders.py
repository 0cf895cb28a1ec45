"""/orders, /cancel, /queue and the Cancel button."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import metrics
from bot.app import PhotogenBot
from bot.embeds import BLUE, STATUS_LABEL, clip, human_eta
from bot.services import orders


class Orders(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot

    @app_commands.command(name="orders", description="Your orders and their status")
    @app_commands.guild_only()
    async def orders_cmd(self, interaction: discord.Interaction) -> None:
        metrics.COMMANDS.labels(command="orders").inc()
        await orders.gate_member(self.bot, interaction)
        rows = await self.bot.run_blocking(orders.list_orders, self.bot.b, interaction.user.id, 15)
        embed = discord.Embed(title="Your orders", colour=BLUE)
        if not rows:
            embed.description = "No orders yet. Start with /train."
        for o in rows:
            what = "training" if o.kind == "train" else "pictures"
            extra = f" · {o.step}/{o.total}" if o.total else ""
            embed.add_field(
                name=f"`{o.id}` · {what}",
                value=f"{STATUS_LABEL.get(o.status, o.status)}{extra} · <t:{int(o.created_ts)}:R>",
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your orders (credits are refunded)")
    @app_commands.guild_only()
    @app_commands.describe(order="The order id (see /orders)")
    async def cancel(self, interaction: discord.Interaction, order: app_commands.Range[str, 1, 64]) -> None:
        metrics.COMMANDS.labels(command="cancel").inc()
        await orders.gate_member(self.bot, interaction)
        await self._cancel(interaction, order)

    @cancel.autocomplete("order")
    async def cancel_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        rows = await self.bot.run_blocking(orders.list_orders, self.bot.b, interaction.user.id, 25, True)
        return [
            app_commands.Choice(name=f"{o.id} · {o.kind} · {o.status}", value=o.id)
            for o in rows
            if current in o.id
        ][:25]

    async def cancel_from_button(self, interaction: discord.Interaction, order_id: str) -> None:
        await orders.gate_member(self.bot, interaction)
        await self._cancel(interaction, order_id)

    async def _cancel(self, interaction: discord.Interaction, order_id: str) -> None:
        result = await self.bot.run_blocking(
            orders.cancel_order, self.bot.b, order_id, actor_id=interaction.user.id, as_admin=False
        )
        await interaction.response.send_message(
            f"Order `{clip(order_id, 64)}` cancelled; {result.refunded} credit(s) refunded.", ephemeral=True
        )
        await orders.refresh_status_message(self.bot, order_id)

    @app_commands.command(name="queue", description="Where your orders stand in the queue, and the fleet")
    @app_commands.guild_only()
    async def queue(self, interaction: discord.Interaction) -> None:
        metrics.COMMANDS.labels(command="queue").inc()
        await orders.gate_member(self.bot, interaction)
        view = await self.bot.run_blocking(orders.queue_overview, self.bot.b, interaction.user.id)
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
            embed.description = "You have no open orders."
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Orders(bot))
