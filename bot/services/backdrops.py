"""The "Clean backdrop" button on results: the member picks a picture and a backdrop (a studio colour or a blur)
in a private picker, and a RenderJob in mode "backdrop" is placed; the agent that holds the pictures replaces the
background (gpu_agent/photos/backdrop.py) and the result comes back like any render, with the usual likeness and
safety handling and the usual buttons."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, cast

import discord

from bot import budget_gate, views
from bot.backends import Backends
from bot.checks import GuildRules
from bot.errors import NotAllowed, NotFound, Refused
from bot.services import budget, member_orders
from bot.services.records import Placed
from cloud.messages import BackdropStyle
from storage import lifecycle

if TYPE_CHECKING:
    from bot.app import PhotogenBot

NAMES = {"white": "white", "grey": "grey", "black": "black", "blur": "blurred"}


async def clicked(
    bot: PhotogenBot, interaction: discord.Interaction, order_id: str, n: int | None, style: str | None
) -> None:
    """Without ``n``/``style``: the private picker; with them: the order for that picture and backdrop."""
    order = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, order_id)
    if order is None or str(order.user_id) != str(interaction.user.id):
        raise NotAllowed("These buttons belong to the member who made the pictures.")
    if n is None or style is None:
        shown = await bot.run_blocking(posted_pictures, bot.backends, order_id)
        if not shown:
            raise NotFound("None of those pictures can be given a new backdrop.")
        await interaction.response.send_message(
            "Pick a picture and its new backdrop (you stay as you are; only the background changes):",
            view=views.backdrop_picker(order_id, shown),
            ephemeral=True,
        )
        return
    rules = await member_orders.gate_new_order(bot, interaction, kind="render")
    await interaction.response.defer(thinking=True)
    shape = dataclasses.replace(
        budget.followup_shape(bot.settings, order.params, "rr"), mode="backdrop", count=1
    )
    if not await budget_gate.approve(bot, interaction, shape):  # the price first, above the threshold
        return
    placed = await bot.run_blocking(
        place_backdrop,
        bot.backends,
        order_id,
        n,
        style,
        user_id=interaction.user.id,
        channel_id=interaction.channel_id,
        rules=rules,
    )
    from bot.services import actions

    new = await bot.run_blocking(lifecycle.get_order, bot.backends.engine, placed.order_id)
    await actions.post_status(bot, interaction, placed, title=new.params["title"] if new else "Your picture")


def posted_pictures(b: Backends, order_id: str) -> list[int]:
    """The pictures of a result that are stored (a withheld or deleted one is not offered)."""
    return [n for n, key in enumerate(lifecycle.image_keys(b.engine, order_id)) if b.blobs.exists(key)]


def place_backdrop(
    b: Backends,
    parent_id: str,
    n: int,
    style: str,
    *,
    user_id: int,
    channel_id: int | None,
    rules: GuildRules,
) -> Placed:
    """A new render order: picture ``n`` of the member's delivered result with a ``style`` backdrop."""
    if style not in NAMES:
        raise Refused("That backdrop is not one of the choices.")
    parent = lifecycle.get_order(b.engine, parent_id)
    if parent is None or str(parent.user_id) != str(user_id):
        raise NotAllowed("These buttons belong to the member who made the pictures.")
    if parent.kind != "render" or parent.status != "delivered":
        raise Refused("Those pictures are not finished yet.")
    image_keys = lifecycle.image_keys(b.engine, parent_id)
    if n >= len(image_keys) or not b.blobs.exists(image_keys[n]):
        raise NotFound(f"Picture {n + 1} of that result was not posted, so it cannot be reused.")
    p = parent.params
    member_orders.refuse_blocked_words(f"{p['prompt']}\n{p.get('negative_prompt', '')}", rules)
    return member_orders.place_render_order(
        b,
        guild_id=int(parent.guild_id) if parent.guild_id else None,
        channel_id=channel_id,
        user_id=user_id,
        model_id=parent.model_id,
        prompt=p["prompt"],
        negative_prompt=p.get("negative_prompt", ""),
        count=1,
        width=p["width"],
        height=p["height"],
        seed=p["seed"] + n,
        guidance=p.get("guidance", 7.0),
        mode="backdrop",
        source_key=image_keys[n],
        rules=rules,
        parent_order_id=parent_id,
        words=p.get("words") or p.get("title") or "your picture",
        label=f"Picture {n + 1}, {NAMES[style]} backdrop",
        style=p.get("style"),
        backdrop=cast(BackdropStyle, style),  # one of NAMES, checked above
    )
