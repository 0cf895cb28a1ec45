"""/imagine (the result buttons, U1–U4 upscale, V1–V4 variations, 🔄 re-roll, 🗑 delete, are
bot/services/actions.py's)."""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands
from discord.ext import commands

from bot import budget_gate, presets
from bot.app import PhotogenBot
from bot.gate import order_rules
from bot.services import actions, member_orders
from bot.views import model_choices
from storage import lifecycle
from storage.budget import JobShape

log = logging.getLogger(__name__)

MAX_SEED = 2**31 - 1


def _preset_choices() -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=p.title[:100], value=p.id) for p in list(presets.presets().values())[:25]
    ]


class Imagine(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Pictures of you from your trained model")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What to draw, e.g. 'at the beach at sunset'",
        model="One of your trained models (default: your newest)",
        negative="What to avoid",
        count="How many pictures (1–4; default: a full grid of 4)",
        aspect="Aspect ratio",
        seed="Seed for reproducible results",
        style="A style preset",
    )
    @app_commands.choices(
        aspect=[app_commands.Choice(name=a, value=a) for a in presets.ASPECTS],
        style=_preset_choices(),
    )
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 900],
        model: str | None = None,
        negative: app_commands.Range[str, 0, 500] | None = None,
        count: app_commands.Range[int, 1, 4] | None = None,
        aspect: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 0, MAX_SEED] | None = None,
        style: app_commands.Choice[str] | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        rules = order_rules(interaction, text=f"{prompt}\n{negative or ''}")
        preset = presets.get(style.value) if style else None
        full_prompt = f"{preset.prompt}, {prompt}" if preset else prompt
        full_negative = ", ".join(
            x for x in ((preset.negative_prompt if preset else ""), negative or "") if x
        )
        width, height = presets.size_for(
            aspect.value if aspect else (preset.aspect if preset else "1:1"), self.bot.settings.render_size
        )
        pictures = count or self.bot.settings.render_default_count
        shape = JobShape("render", "txt2img", pictures, width, height, self.bot.settings.render_steps)
        # The price first (bot/budget_gate.py): refused past the server's budget, confirmed above its threshold.
        if not await budget_gate.approve(self.bot, interaction, shape):
            return
        placed = await self.bot.run_blocking(
            member_orders.place_render_order,
            self.bot.backends,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            model_id=model,
            prompt=full_prompt[:1000],
            negative_prompt=full_negative[:1000],
            count=pictures,
            width=width,
            height=height,
            seed=seed if seed is not None else secrets.randbelow(MAX_SEED),
            guidance=preset.guidance if preset else 7.0,
            mode="txt2img",
            source_key=None,
            rules=rules,
            # Close-up presets opt out; a free prompt asks for it, and the agent redoes only small faces.
            face_detail=preset.face_detail if preset else True,
            words=prompt,
            style=preset.title if preset else None,
        )
        await actions.post_status(self.bot, interaction, placed, title=member_orders.result_title(prompt))

    @imagine.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Only the caller's own trained models: another member's model id is never offered.
        models = await self.bot.run_blocking(
            lifecycle.list_models, self.bot.backends.engine, interaction.user.id
        )
        return model_choices(models, current, ready_only=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Imagine(bot))
