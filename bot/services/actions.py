"""What a member's click does, in Discord terms, shared with the slash commands that do the same: cancel an
order, act on a result (U/V/🔄/🗑/singles), confirm /forget-me, post a new order's status message.

The persistent buttons (bot/views.py) call these with ``interaction.client``; no cog is looked up. Buttons
are not app commands, so the command tree's gate (bot/gate.py) does not run for them: each action calls the
gate it needs itself.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord

from bot import budget_gate, views
from bot.embeds import GREEN, clip, order_status_embed
from bot.errors import NotAllowed
from bot.services import budget, delivery, group_privacy, member_orders
from bot.services.records import Placed
from storage import lifecycle

if TYPE_CHECKING:
    from bot.app import PhotogenBot

log = logging.getLogger(__name__)


async def cancel(bot: PhotogenBot, interaction: discord.Interaction, order_id: str) -> None:
    """The member's own order (the service refuses another's); credits refunded, status message updated."""
    result = await bot.run_blocking(
        member_orders.cancel_order, bot.backends, order_id, actor_id=interaction.user.id, as_admin=False
    )
    await interaction.response.send_message(
        f"Order `{clip(order_id, 64)}` cancelled; {result.refunded} credit(s) refunded.", ephemeral=True
    )
    await member_orders.refresh_status_message(bot, order_id)


async def cancel_clicked(bot: PhotogenBot, interaction: discord.Interaction, order_id: str) -> None:
    await member_orders.gate_member(bot, interaction)
    await cancel(bot, interaction, order_id)


async def post_status(
    bot: PhotogenBot, interaction: discord.Interaction, placed: Placed, *, title: str
) -> None:
    """A placed order's public status message (with its Cancel button), remembered for the progress edits."""
    embed = order_status_embed(
        title=title,
        order_id=placed.order_id,
        status="queued",
        queue_position=placed.queue_position,
        eta_s=placed.eta_s,
    )
    view = views.status_view(placed.order_id)
    if interaction.response.is_done():
        message = await interaction.edit_original_response(embed=embed, view=view)
    else:
        await interaction.response.send_message(embed=embed, view=view)
        message = await interaction.original_response()
    await bot.run_blocking(lifecycle.set_status_message, bot.backends.engine, placed.order_id, message.id)


async def result_clicked(
    bot: PhotogenBot, interaction: discord.Interaction, action: str, order_id: str, n: int
) -> None:
    """U/V/🔄/🗑/singles on a result message: only the member who ordered it may use them."""
    order = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, order_id)
    if order is None or str(order.user_id) != str(interaction.user.id):
        raise NotAllowed("These buttons belong to the member who made the pictures.")
    if action == "one":
        await _send_singles(bot, interaction, order_id)
        return
    if action == "del":
        await _delete_pictures(bot, interaction, order_id)
        return
    rules = await member_orders.gate_new_order(bot, interaction, kind="render")
    # A new public message for the new order; deferring first keeps the 3-second window whatever the load.
    await interaction.response.defer(thinking=True)
    shape = budget.followup_shape(bot.settings, order.params, action)
    if not await budget_gate.approve(bot, interaction, shape):  # the price first, above the threshold
        return
    placed = await bot.run_blocking(
        member_orders.place_followup_render,
        bot.backends,
        order_id,
        n,
        action,
        user_id=interaction.user.id,
        channel_id=interaction.channel_id,
        rules=rules,
    )
    new = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, placed.order_id)
    await post_status(bot, interaction, placed, title=new.params["title"] if new else "Your pictures")


async def _delete_pictures(bot: PhotogenBot, interaction: discord.Interaction, order_id: str) -> None:
    counts = await bot.run_blocking(member_orders.delete_render, bot.backends, order_id, interaction.user.id)
    await interaction.response.send_message(f"Deleted {counts} picture(s).", ephemeral=True)
    if interaction.message is not None:
        try:
            await interaction.message.delete()
        except discord.HTTPException:
            log.warning("could not delete result message %s", interaction.message.id)


async def _send_singles(bot: PhotogenBot, interaction: discord.Interaction, order_id: str) -> None:
    """The pictures one by one, full size, for the member alone (on request: the result keeps one grid)."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    pictures = await bot.run_blocking(delivery.single_pictures, bot.backends, order_id)
    if not pictures:
        await interaction.followup.send("These pictures were deleted.", ephemeral=True)
        return
    await interaction.followup.send(
        f"Your {len(pictures)} pictures, one by one.",
        ephemeral=True,
        files=[discord.File(io.BytesIO(data), filename=name) for name, data in pictures],
    )


async def forget_confirmed(bot: PhotogenBot, interaction: discord.Interaction, user_id: int) -> None:
    """The /forget-me confirmation: only the member who asked may press it."""
    if interaction.user.id != user_id:
        raise NotAllowed("Only the member who asked can confirm this.")
    await interaction.response.defer(ephemeral=True, thinking=True)
    # Group pictures of them that others made go too (docs/PRIVACY.md), then everything of their own.
    posts = await bot.run_blocking(group_privacy.forget_pictured, bot.backends, user_id)
    receipt = await bot.run_blocking(member_orders.forget_user, bot.backends, user_id)
    receipt["group pictures of you"] = len(posts)
    await group_privacy.delete_posts(bot, posts)
    embed = discord.Embed(title="Deleted", colour=GREEN)
    for what, n in receipt.items():
        embed.add_field(name=what.replace("_", " "), value=str(n), inline=True)
    await interaction.followup.send(embed=embed, ephemeral=True)
