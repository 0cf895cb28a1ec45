"""The price before spending, in Discord terms: every new order (/train, /imagine, /group and the U/V/🔄 buttons)
passes ``approve`` after its own checks and before anything is stored, charged or queued.

Past the server's budget the order is refused with the numbers (ephemeral, bot/services/budget.py). Above the
server's confirm threshold the member gets an ephemeral message with the price and Confirm / Cancel buttons;
Confirm lets the command place its order exactly as it would have (its public placeholder, which said a price
is being confirmed, becomes the status message), Cancel or no answer within ``CONFIRM_TIMEOUT_S`` deletes that
placeholder and nothing else exists: the order is only written after the answer.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import discord

from bot.embeds import BLUE
from bot.services import budget
from storage.budget import JobShape

if TYPE_CHECKING:
    from bot.app import PhotogenBot

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 120.0
WAITING = "⏳ Waiting for the member to confirm the price…"
CONFIRMED = "Price confirmed."


class PriceConfirm(discord.ui.View):
    """Confirm / Cancel under a price, for the member who asked only (the message is ephemeral besides)."""

    def __init__(self, user_id: int, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.user_id = user_id
        self.confirmed = False
        self.answered = False

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.user_id

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.success)
    async def confirm(self, interaction: discord.Interaction, _: discord.ui.Button[PriceConfirm]) -> None:
        self.confirmed = self.answered = True
        await interaction.response.edit_message(content="Confirmed: placing your order.", view=None)
        self.stop()

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, _: discord.ui.Button[PriceConfirm]) -> None:
        self.answered = True
        await interaction.response.edit_message(
            content="Cancelled: nothing was queued or charged.", embed=None, view=None
        )
        self.stop()


async def approve(
    bot: PhotogenBot, interaction: discord.Interaction, shape: JobShape, *, timeout: float | None = None
) -> bool:
    """True: place the order. False: the member cancelled or did not answer (told, placeholder removed).
    Raises ``Busy`` (answered ephemerally by the caller's error handling) past the server's budget.
    The interaction must already be deferred."""
    if interaction.guild_id is None:
        return True
    b = bot.backends
    check = await bot.run_blocking(budget.check_order, b, interaction.guild_id, shape)
    if check is None or not check.ask:
        return True
    view = PriceConfirm(interaction.user.id, CONFIRM_TIMEOUT_S if timeout is None else timeout)
    embed = discord.Embed(title="Confirm the price", description=check.price_text(), colour=BLUE)
    # A followup to a still-loading "thinking…" would replace it, in public: it says what is awaited first
    # (the price itself is the member's alone), and becomes the order's status message once confirmed.
    await interaction.edit_original_response(content=WAITING)
    prompt = await interaction.followup.send(embed=embed, view=view, ephemeral=True, wait=True)
    await view.wait()
    if view.confirmed:
        # Another order may have used the budget while the member read the price.
        await bot.run_blocking(budget.check_order, b, interaction.guild_id, shape)
        await interaction.edit_original_response(content=CONFIRMED)
        return True
    with contextlib.suppress(discord.HTTPException):
        await interaction.delete_original_response()  # the public "thinking…": no order follows it
    if not view.answered:
        with contextlib.suppress(discord.HTTPException):
            await prompt.edit(content="No answer: nothing was queued or charged.", embed=None, view=None)
    return False
