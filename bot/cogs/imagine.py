"""/imagine and the result buttons (U1–U4 upscale, V1–V4 variations, 🔄 re-roll, 🗑 delete)."""

from __future__ import annotations

import io
import logging
import secrets

import discord
from discord import app_commands
from discord.ext import commands

from bot import metrics, presets
from bot.app import PhotogenBot
from bot.embeds import order_status_embed
from bot.errors import NotAllowed
from bot.services import delivery, orders
from bot.views import model_choices, status_view

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
        metrics.COMMANDS.labels(command="imagine").inc()
        await interaction.response.defer(thinking=True)
        rules = await orders.gate_new_order(
            self.bot, interaction, kind="render", text=f"{prompt}\n{negative or ''}"
        )
        preset = presets.get(style.value) if style else None
        full_prompt = f"{preset.prompt}, {prompt}" if preset else prompt
        full_negative = ", ".join(
            x for x in ((preset.negative_prompt if preset else ""), negative or "") if x
        )
        width, height = presets.size_for(
            aspect.value if aspect else (preset.aspect if preset else "1:1"), self.bot.settings.render_size
        )
        placed = await self.bot.run_blocking(
            orders.place_render_order,
            self.bot.b,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            model_id=model,
            prompt=full_prompt[:1000],
            negative_prompt=full_negative[:1000],
            count=count or self.bot.settings.render_default_count,
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
        await self._post_status(interaction, placed, title=orders.result_title(prompt))

    async def _post_status(
        self, interaction: discord.Interaction, placed: orders.Placed, *, title: str
    ) -> None:
        embed = order_status_embed(
            title=title,
            order_id=placed.order_id,
            status="queued",
            queue_position=placed.queue_position,
            eta_s=placed.eta_s,
        )
        if interaction.response.is_done():
            message = await interaction.edit_original_response(embed=embed, view=status_view(placed.order_id))
        else:
            await interaction.response.send_message(embed=embed, view=status_view(placed.order_id))
            message = await interaction.original_response()
        await self.bot.run_blocking(orders.set_status_message, self.bot.b, placed.order_id, message.id)

    @imagine.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Only the caller's own trained models: another member's model id is never offered.
        models = await self.bot.run_blocking(orders.list_models, self.bot.b, interaction.user.id)
        return model_choices(models, current, ready_only=True)

    async def on_image_button(
        self, interaction: discord.Interaction, action: str, order_id: str, n: int
    ) -> None:
        """U/V/🔄/🗑 on a result message: only the member who ordered it may use them."""
        order = await self.bot.run_blocking(orders.get_order, self.bot.b, order_id)
        if order is None or str(order.user_id) != str(interaction.user.id):
            raise NotAllowed("These buttons belong to the member who made the pictures.")
        if action == "one":
            await self._send_singles(interaction, order_id)
            return
        if action == "del":
            counts = await self.bot.run_blocking(
                orders.delete_render, self.bot.b, order_id, interaction.user.id
            )
            await interaction.response.send_message(f"Deleted {counts} picture(s).", ephemeral=True)
            if interaction.message is not None:
                try:
                    await interaction.message.delete()
                except discord.HTTPException:
                    log.warning("could not delete result message %s", interaction.message.id)
            return
        rules = await orders.gate_new_order(self.bot, interaction, kind="render")
        # A new public message for the new order; deferring first keeps the 3-second window whatever the load.
        await interaction.response.defer(thinking=True)
        placed = await self.bot.run_blocking(
            orders.place_followup_render,
            self.bot.b,
            order_id,
            n,
            action,
            user_id=interaction.user.id,
            channel_id=interaction.channel_id,
            rules=rules,
        )
        new = await self.bot.run_blocking(orders.get_order, self.bot.b, placed.order_id)
        await self._post_status(interaction, placed, title=new.params["title"] if new else "Your pictures")

    async def _send_singles(self, interaction: discord.Interaction, order_id: str) -> None:
        """The pictures one by one, full size, for the member alone (on request: the result keeps one grid)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        pictures = await self.bot.run_blocking(delivery.single_pictures, self.bot.b, order_id)
        if not pictures:
            await interaction.followup.send("These pictures were deleted.", ephemeral=True)
            return
        await interaction.followup.send(
            f"Your {len(pictures)} pictures, one by one.",
            ephemeral=True,
            files=[discord.File(io.BytesIO(data), filename=name) for name, data in pictures],
        )


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Imagine(bot))
