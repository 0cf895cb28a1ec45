"""What the buttons of group pictures do (bot/group_views.py calls these with the client they were clicked on):
answer a consent request, settle an order that started or ended, act on a group result (V/🔄/🗑/Singles)."""

from __future__ import annotations

import io
import logging

import discord

from bot import budget_gate, group_views
from bot.app import PhotogenBot
from bot.embeds import order_status_embed
from bot.errors import NotAllowed
from bot.services import budget, delivery, group, group_privacy, member_orders
from bot.views import status_view
from storage import lifecycle

log = logging.getLogger(__name__)
NO_PINGS = discord.AllowedMentions.none()


async def consent(
    bot: PhotogenBot, interaction: discord.Interaction, order_id: str, asked_id: int, answer: str
) -> None:
    user_id = interaction.user.id
    if user_id != asked_id:
        raise NotAllowed("This request is for the member it names, not for you.")
    if answer == "w":
        outcome = await bot.run_blocking(group.withdraw, bot.backends, order_id, user_id)
    else:
        outcome = await bot.run_blocking(group.answer_request, bot.backends, order_id, user_id, answer == "a")
    if not outcome.changed:
        await interaction.response.send_message(f"This request is already {outcome.status}.", ephemeral=True)
        return
    said = {
        "accepted": "✅ {who} accepted.",
        "refused": "❌ {who} declined.",
        "revoked": "↩️ {who} withdrew their consent.",
    }[outcome.status]
    keep_withdraw = outcome.status == "accepted" and not outcome.ended
    await interaction.response.edit_message(
        content=said.format(who=interaction.user.mention),
        view=group_views.consent_view(order_id, user_id, accepted=True) if keep_withdraw else None,
        allowed_mentions=NO_PINGS,
    )
    if outcome.ended or outcome.placed is not None:
        await settle(bot, order_id)


async def settle(bot: PhotogenBot, order_id: str) -> None:
    """The order started or ended: its status message shows it; an ended order's requests lose their
    buttons."""
    await member_orders.refresh_status_message(bot, order_id)
    reason = await bot.run_blocking(group.end_reason, bot.backends, order_id)
    if reason is None:
        return
    for req in await bot.run_blocking(group.request_messages, bot.backends, order_id):
        if not req.channel_id or not req.message_id:
            continue
        message = bot.get_partial_messageable(int(req.channel_id)).get_partial_message(int(req.message_id))
        try:
            await message.edit(
                content=f"This group picture request ended: {reason}",
                view=None,
                allowed_mentions=NO_PINGS,
            )
        except discord.HTTPException:
            log.info("request message %s of order %s is gone", req.message_id, order_id)


# --- group result buttons ----------------------------------------------------------------------------
async def image_button(
    bot: PhotogenBot, interaction: discord.Interaction, action: str, order_id: str, n: int
) -> None:
    if action == "del":
        deleted = await bot.run_blocking(
            group_privacy.delete_post, bot.backends, order_id, interaction.user.id
        )
        await interaction.response.send_message(f"Deleted {deleted} picture(s).", ephemeral=True)
        if interaction.message is not None:
            try:
                await interaction.message.delete()
            except discord.HTTPException:
                log.warning("could not delete group result message %s", interaction.message.id)
        return
    if action == "one":
        members = await bot.run_blocking(group.pictured, bot.backends, order_id)
        if str(interaction.user.id) not in members:
            raise NotAllowed("These buttons belong to the members in the picture.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        pictures = await bot.run_blocking(delivery.single_pictures, bot.backends, order_id)
        await interaction.followup.send(
            f"{len(pictures)} picture(s), one by one." if pictures else "These pictures were deleted.",
            ephemeral=True,
            files=[discord.File(io.BytesIO(data), filename=name) for name, data in pictures],
        )
        return
    parent = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, order_id)
    if parent is None or parent.user_id != str(interaction.user.id):  # before the public "thinking…"
        raise NotAllowed("Only the member who made this group picture can make more of it.")
    rules = await member_orders.gate_new_order(bot, interaction, kind="render")
    await interaction.response.defer(thinking=True)
    if not await budget_gate.approve(
        bot, interaction, budget.followup_shape(bot.settings, parent.params, action)
    ):
        return
    req = await bot.run_blocking(
        group.place_followup,
        bot.backends,
        order_id,
        n,
        action,
        user_id=interaction.user.id,
        channel_id=interaction.channel_id,
        rules=rules,
    )
    placed, _ = await bot.run_blocking(group.start_if_ready, bot.backends, req.order_id)
    order = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, req.order_id)
    embed = order_status_embed(
        title=req.title,
        order_id=req.order_id,
        status=order.status if order else "failed",
        queue_position=placed.queue_position if placed else None,
        eta_s=placed.eta_s if placed else None,
        error=order.error_message if order else None,
    )
    message = await interaction.edit_original_response(
        embed=embed, view=status_view(req.order_id) if placed else None
    )
    await bot.run_blocking(lifecycle.set_status_message, bot.backends.engine, req.order_id, message.id)
