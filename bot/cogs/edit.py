"""/edit: a photo of you changed in words ("make it night"), by InstructPix2Pix on the GPU agent. The Edit
button on results does the same to one of your pictures (bot/edit_views.py, bot/services/edit_actions.py)."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import budget_gate
from bot.app import PhotogenBot
from bot.edit_views import EDIT_DYNAMIC_ITEMS, INSTRUCTION_MAX
from bot.errors import Refused
from bot.gate import order_rules
from bot.services import actions, edit, intake
from bot.views import model_choices
from storage import lifecycle
from storage.budget import JobShape

log = logging.getLogger(__name__)


class Edit(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        self.intakes = intake.MemberIntakes()
        self.slots = asyncio.Semaphore(bot.settings.intake_workers)

    @app_commands.command(name="edit", description="Change a photo of you in words, e.g. 'make it night'")
    @app_commands.guild_only()
    @app_commands.describe(
        instruction="What to change, e.g. 'make it night' or 'give me a red scarf'",
        photo="A photo of you, only you (to edit one of your results, use its Edit button)",
        model="Your trained model that keeps the face yours (default: your newest, if any)",
        keep_face="Keep your trained model active during the edit (default: yes)",
        text_guidance="How strongly to follow the instruction (1–20; default 7.5)",
        image_guidance="How closely to keep to the photo (1–10; default 1.5)",
        count="How many versions (1–4; default 1)",
        seed="Seed for reproducible results",
    )
    async def edit(
        self,
        interaction: discord.Interaction,
        instruction: app_commands.Range[str, 1, INSTRUCTION_MAX],
        photo: discord.Attachment,
        model: str | None = None,
        keep_face: bool = True,
        text_guidance: app_commands.Range[float, 1.0, 20.0] | None = None,
        image_guidance: app_commands.Range[float, 1.0, 10.0] | None = None,
        count: app_commands.Range[int, 1, 4] = 1,
        seed: app_commands.Range[int, 0, edit.MAX_SEED] | None = None,
    ) -> None:
        if not self.intakes.claim(interaction.user.id):
            await interaction.response.send_message(
                "Your photo is still being checked; wait for that answer first.", ephemeral=True
            )
            return
        try:
            # Too large by what Discord announces: an ephemeral refusal before the public defer.
            intake.check_declared(self.bot.settings, [photo])
            if photo.size > self.bot.settings.max_photo_bytes:
                cap = self.bot.settings.max_photo_bytes / 1_048_576
                raise Refused(f"That photo is {photo.size / 1_048_576:.1f} MB; the limit is {cap:.0f} MB.")
            rules = order_rules(interaction, text=instruction)
            await interaction.response.defer(thinking=True)
            async with self.slots:
                downloaded, early = await intake.download(self.bot.settings, [photo])
                if early:
                    raise Refused(f"That photo cannot be edited: {early[0][1]}. Nothing was charged.")
                crop, size = await self.bot.run_intake(
                    edit.check_upload, self.bot.settings, downloaded[0].label, downloaded[0].data
                )
                await self.bot.run_intake(
                    edit.refuse_another_person,
                    self.bot.backends,
                    interaction.user.id,
                    model,
                    downloaded[0].data,
                )
            self.intakes.release(interaction.user.id)
            w, h = size
            shape = JobShape("render", "edit", count or 1, w, h, self.bot.settings.render_steps)
            if not await budget_gate.approve(
                self.bot, interaction, shape
            ):  # the price first, above the threshold
                return
            placed = await self.bot.run_blocking(
                edit.place_edit_order,
                self.bot.backends,
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                user_id=interaction.user.id,
                instruction=" ".join(instruction.split()),
                rules=rules,
                photo=crop,
                size=size,
                model_id=model,
                keep_face=keep_face,
                guidance=text_guidance,
                image_guidance=image_guidance,
                count=count,
                seed=seed,
            )
        finally:
            self.intakes.release(interaction.user.id)
        new = await self.bot.run_blocking(lifecycle.get_order, self.bot.backends.engine, placed.order_id)
        await actions.post_status(self.bot, interaction, placed, title=new.params["title"] if new else "Edit")

    @edit.autocomplete("model")
    async def model_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        # Only the caller's own trained models: another member's model id is never offered.
        models = await self.bot.run_blocking(
            lifecycle.list_models, self.bot.backends.engine, interaction.user.id
        )
        return model_choices(models, current, ready_only=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Edit(bot))
    bot.add_dynamic_items(*EDIT_DYNAMIC_ITEMS)
