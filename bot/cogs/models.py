"""/models list and /models delete — a member's own trained models only."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import PhotogenBot
from bot.embeds import BLUE, clip
from bot.services import member_orders
from bot.views import model_choices
from storage import lifecycle


class Models(commands.GroupCog, group_name="models", group_description="Your trained models"):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="list", description="List your trained models")
    @app_commands.guild_only()
    async def list_cmd(self, interaction: discord.Interaction) -> None:
        models = await self.bot.run_blocking(
            lifecycle.list_models, self.bot.backends.engine, interaction.user.id
        )
        embed = discord.Embed(title="Your models", colour=BLUE)
        if not models:
            embed.description = "No models yet. Train one with /train."
        for m in models[:25]:
            embed.add_field(
                name=clip(m.name, 100),
                value=f"`{m.id}` · {m.class_word} · {m.status} · <t:{int(m.created_ts)}:R>",
                inline=False,
            )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="delete", description="Delete one of your models and its weights")
    @app_commands.guild_only()
    @app_commands.describe(model="The model to delete")
    async def delete_cmd(
        self, interaction: discord.Interaction, model: app_commands.Range[str, 1, 64]
    ) -> None:
        name = await self.bot.run_blocking(
            member_orders.delete_model, self.bot.backends, interaction.user.id, model
        )
        await interaction.response.send_message(f"Model **{clip(name, 100)}** deleted.", ephemeral=True)

    @delete_cmd.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        models = await self.bot.run_blocking(
            lifecycle.list_models, self.bot.backends.engine, interaction.user.id
        )
        return model_choices(models, current, ready_only=False)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Models(bot))
