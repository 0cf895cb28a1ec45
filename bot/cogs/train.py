"""/train: photos in, a training order out — every photo checked before any GPU time is spent."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import metrics
from bot.app import PhotogenBot
from bot.embeds import photo_report_embed
from bot.replies import reply_private
from bot.services import intake, orders
from bot.views import status_view

log = logging.getLogger(__name__)

# People only, adults: every photo must show one face (the checks crop around it and compare it across the set), and
# the recipe is for faces. Pets would need their own path (no face checks, other crops): not offered. Children are
# not offered either: a community bot does not make likeness models of minors.
CLASS_WORDS = ["man", "woman", "person"]
CONSENT = (
    "Photos must be of **you**. "
    "Training a model of anyone else is not allowed, even if you have their photos."
)


class Train(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        self.intakes = intake.MemberIntakes()
        # At most this many uploads held in memory at once (each within INTAKE_MAX_TOTAL_BYTES); the rest wait.
        self.slots = asyncio.Semaphore(bot.settings.intake_workers)

    @app_commands.command(
        name="train",
        description="Train a model of yourself on 5–20 photos — only photos of you, never of others",
    )
    @app_commands.guild_only()
    @app_commands.describe(
        name="A name for the model (you pick it later in /imagine)",
        class_word="What you are: man, woman, person (people only: every photo must show your face)",
        photo1="A photo of you, only you (or a .zip with all of them)",
        photo2="Another photo (or a .zip)",
        photo3="Another photo (or a .zip)",
        photo4="Another photo (or a .zip)",
        photo5="Another photo (or a .zip)",
        photo6="Another photo (or a .zip)",
        photo7="Another photo (or a .zip)",
        photo8="Another photo (or a .zip)",
        photo9="Another photo (or a .zip)",
        photo10="Another photo (or a .zip)",
        photo11="Another photo (or a .zip)",
        photo12="Another photo (or a .zip)",
        photo13="Another photo (or a .zip)",
        photo14="Another photo (or a .zip)",
        photo15="Another photo (or a .zip)",
        photo16="Another photo (or a .zip)",
        photo17="Another photo (or a .zip)",
        photo18="Another photo (or a .zip)",
        photo19="Another photo (or a .zip)",
        photo20="Another photo (or a .zip)",
    )
    @app_commands.choices(class_word=[app_commands.Choice(name=w, value=w) for w in CLASS_WORDS])
    async def train(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 32],
        class_word: app_commands.Choice[str],
        photo1: discord.Attachment,
        photo2: discord.Attachment | None = None,
        photo3: discord.Attachment | None = None,
        photo4: discord.Attachment | None = None,
        photo5: discord.Attachment | None = None,
        photo6: discord.Attachment | None = None,
        photo7: discord.Attachment | None = None,
        photo8: discord.Attachment | None = None,
        photo9: discord.Attachment | None = None,
        photo10: discord.Attachment | None = None,
        photo11: discord.Attachment | None = None,
        photo12: discord.Attachment | None = None,
        photo13: discord.Attachment | None = None,
        photo14: discord.Attachment | None = None,
        photo15: discord.Attachment | None = None,
        photo16: discord.Attachment | None = None,
        photo17: discord.Attachment | None = None,
        photo18: discord.Attachment | None = None,
        photo19: discord.Attachment | None = None,
        photo20: discord.Attachment | None = None,
    ) -> None:
        metrics.COMMANDS.labels(command="train").inc()
        if not self.intakes.claim(interaction.user.id):
            await interaction.response.send_message(
                "Your photos are still being checked; wait for that answer before sending more.",
                ephemeral=True,
            )
            return
        given = [
            photo1,
            photo2,
            photo3,
            photo4,
            photo5,
            photo6,
            photo7,
            photo8,
            photo9,
            photo10,
            photo11,
            photo12,
            photo13,
            photo14,
            photo15,
            photo16,
            photo17,
            photo18,
            photo19,
            photo20,
        ]
        try:  # released as soon as the photos are checked, and in any case when the command ends
            # Too many files or bytes, by what Discord announces: an ephemeral refusal before the public defer.
            intake.check_declared(self.bot.settings, [a for a in given if a is not None])
            await self._train(interaction, name, class_word, given)
        finally:
            self.intakes.release(interaction.user.id)

    async def _train(
        self,
        interaction: discord.Interaction,
        name: str,
        class_word: app_commands.Choice[str],
        given: list[discord.Attachment | None],
    ) -> None:
        # The 3-second answer window: defer before any download, check or database work.
        await interaction.response.defer(thinking=True)
        rules = await orders.gate_new_order(self.bot, interaction, kind="train")
        # Limits and credits before the downloads and face checks, so nobody waits for a refusal.
        await self.bot.run_blocking(orders.precheck_train, self.bot.b, interaction.user.id, rules)
        attachments = [a for a in given if a is not None]
        async with self.slots:
            photos, early = await intake.download(self.bot.settings, attachments)
            report = await self.bot.run_intake(intake.check, self.bot.settings, photos, early)
            del photos  # the uploads are not needed past the check: only the crops are stored
        self.intakes.release(interaction.user.id)
        if not report.accepted:
            # What is wrong with a member's photos is theirs to see, not the channel's.
            await reply_private(
                interaction,
                photo_report_embed(accepted=False, summary=report.summary, lines=report.lines),
                content=CONSENT,
            )
            return
        placed = await self.bot.run_blocking(
            orders.place_train_order,
            self.bot.b,
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            name=name,
            class_word=class_word.value,
            crops=report.crops,
            rules=rules,
        )
        message = await interaction.edit_original_response(
            content=CONSENT,
            embed=photo_report_embed(
                accepted=True,
                summary=report.summary,
                lines=report.lines,
                order_id=placed.order_id,
                queue_position=placed.queue_position,
                eta_s=placed.eta_s,
            ),
            view=status_view(placed.order_id),
        )
        await self.bot.run_blocking(orders.set_status_message, self.bot.b, placed.order_id, message.id)
        # The order is the channel's to follow; the member's balance is theirs alone.
        await interaction.followup.send(f"{placed.credits_left} credit(s) left.", ephemeral=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Train(bot))
