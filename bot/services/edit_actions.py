"""What the Edit button and its modal do (bot/edit_views.py calls these with the client they came to).

Only the member who ordered the pictures may edit them (as for U/V/🔄); group pictures have no Edit button,
and a crafted click on one is refused (bot/services/edit.py says why). The click runs the member gate; the
modal's answer runs the new-order gate (pause switch, blocked words) before anything is charged.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import discord

from bot import budget_gate
from bot.errors import Refused
from bot.services import actions, budget, edit, member_orders
from storage import lifecycle

if TYPE_CHECKING:
    from bot.app import PhotogenBot


async def edit_clicked(bot: PhotogenBot, interaction: discord.Interaction, order_id: str) -> None:
    """Open the modal, after the checks that need no words: theirs, finished, not a group picture."""
    from bot.edit_views import EditModal

    await bot.run_blocking(edit.editable_order, bot.backends, order_id, interaction.user.id)
    await member_orders.gate_member(bot, interaction)
    keys = await bot.run_blocking(lifecycle.image_keys, bot.backends.engine, order_id)
    await interaction.response.send_modal(EditModal(order_id, len(keys)))


async def edit_submitted(
    bot: PhotogenBot,
    interaction: discord.Interaction,
    order_id: str,
    count: int,
    *,
    instruction: str,
    picture: str,
) -> None:
    """The modal's answer: picture n of the result edited as the member wrote, a new order like /imagine's."""
    instruction = " ".join(instruction.split())
    if not instruction:
        raise Refused("Say what to change, e.g. 'make it night'. Nothing was charged.")
    if not picture.strip().isdigit() or not 1 <= int(picture) <= count:
        raise Refused(f"Pick a picture from 1 to {count}. Nothing was charged.")
    rules = await member_orders.gate_new_order(bot, interaction, kind="render", text=instruction)
    await interaction.response.defer(thinking=True)
    parent = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, order_id)
    if parent is not None:
        shape = dataclasses.replace(
            budget.followup_shape(bot.settings, parent.params, "rr"), mode="edit", count=1
        )
        if not await budget_gate.approve(bot, interaction, shape):  # the price first, above the threshold
            return
    placed = await bot.run_blocking(
        edit.edit_result,
        bot.backends,
        order_id,
        int(picture) - 1,
        instruction,
        user_id=interaction.user.id,
        channel_id=interaction.channel_id,
        rules=rules,
    )
    new = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, placed.order_id)
    await actions.post_status(bot, interaction, placed, title=new.params["title"] if new else "Your edit")
