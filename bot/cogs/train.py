"""/train: photos in, a training order out — every photo checked before any GPU time is spent."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import budget_gate
from bot.app import PhotogenBot
from bot.embeds import photo_report_embed
from bot.gate import order_rules
from bot.options import numbered, options
from bot.replies import reply_private
from bot.services import budget, intake, member_orders
from bot.views import status_view
from storage import lifecycle
from storage.budget import JobShape

log = logging.getLogger(__name__)

# People only, adults: every photo must show one face (the checks crop around it and compare it across the set), and
# the recipe is for faces. Pets would need their own path (no face checks, other crops): not offered. Children are
# not offered either: a community bot does not make likeness models of minors.
CLASS_WORDS = ["man", "woman", "person"]
# photo1 … photo20: Discord offers no list-of-files option, so each photo is an option of its own.
PHOTO_OPTIONS = numbered("photo", 20)
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
        description="Train a model of yourself on 3–20 photos — only photos of you, never of others",
    )
    @app_commands.guild_only()
    @app_commands.describe(
        name="A name for the model (you pick it later in /imagine)",
        class_word="What you are: man, woman, person (people only: every photo must show your face)",
    )
    @app_commands.choices(class_word=[app_commands.Choice(name=w, value=w) for w in CLASS_WORDS])
    @options(
        PHOTO_OPTIONS,
        discord.Attachment,
        required=1,
        descriptions=["A photo of you, only you (or a .zip with all of them)"]
        + ["Another photo (or a .zip)"] * (len(PHOTO_OPTIONS) - 1),
    )
    async def train(
        self,
        interaction: discord.Interaction,
        name: app_commands.Range[str, 1, 32],
        class_word: app_commands.Choice[str],
        **photos: discord.Attachment | None,
    ) -> None:
        if not self.intakes.claim(interaction.user.id):
            await interaction.response.send_message(
                "Your photos are still being checked; wait for that answer before sending more.",
                ephemeral=True,
            )
            return
        given = [photos.get(option) for option in PHOTO_OPTIONS]
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
        rules = order_rules(interaction)
        # Limits and credits before the downloads and face checks, so nobody waits for a refusal.
        await self.bot.run_blocking(
            member_orders.precheck_train, self.bot.backends, interaction.user.id, rules
        )
        # Past the server's budget: refused before the downloads too (the price is asked once photos pass).
        await self.bot.run_blocking(
            budget.check_order, self.bot.backends, interaction.guild_id, JobShape("train")
        )
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
        # The photos are only in memory: a cancel or no answer leaves nothing stored.
        if not await budget_gate.approve(self.bot, interaction, JobShape("train")):
            return
        placed = await self.bot.run_blocking(
            member_orders.place_train_order,
            self.bot.backends,
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
        await self.bot.run_blocking(
            lifecycle.set_status_message, self.bot.backends.engine, placed.order_id, message.id
        )
        # The order is the channel's to follow; the member's balance is theirs alone.
        await interaction.followup.send(f"{placed.credits_left} credit(s) left.", ephemeral=True)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Train(bot))
