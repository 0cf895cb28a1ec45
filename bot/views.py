"""Persistent buttons. Each is a DynamicItem whose custom_id carries the ids its handler needs, so a click
works after a restart without any in-memory state; the handler is a function of bot/services/actions.py, given
the bot the interaction came to (no cog is looked up by name).

custom_id layout (≤ 100 characters):
    pg:cancel:{order_id}            Cancel on a status message
    pg:{up|var|rr|del|one}:{order_id}:{n}   U1–U4, V1–V4, 🔄 re-roll, 🗑 delete, Singles on a result message
    pg:forget:{user_id}             the /forget-me confirmation
    pg:bd:{order_id}[:{n}:{style}]  Clean backdrop on a result; with n and style, a choice in its picker
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands

from bot import metrics
from bot.errors import UserFacingError
from bot.replies import reply_error
from bot.services import actions, backdrops
from storage.contracts import ID_PATTERN

if TYPE_CHECKING:
    from bot.app import PhotogenBot

log = logging.getLogger(__name__)

ID = ID_PATTERN


async def _guarded(interaction: discord.Interaction, name: str, coro: Any) -> None:
    """discord.py logs and drops exceptions from dynamic items: route them to the member instead."""
    metrics.COMMANDS.labels(command=f"button:{name}").inc()
    try:
        await coro
    except UserFacingError as err:
        metrics.COMMAND_REFUSED.labels(kind=type(err).__name__).inc()
        await reply_error(interaction, err.message)
    except Exception:
        metrics.COMMAND_ERRORS.inc()
        log.exception("button %s failed", name)
        await reply_error(interaction, "Something went wrong on our side; please try again.")


def _bot(interaction: discord.Interaction) -> PhotogenBot:
    return cast("PhotogenBot", interaction.client)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"pg:cancel:(?P<order_id>{ID})"):
    def __init__(self, order_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"pg:cancel:{order_id}"
            )
        )
        self.order_id = order_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(match["order_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        clicked = actions.cancel_clicked(_bot(interaction), interaction, self.order_id)
        await _guarded(interaction, "cancel", clicked)


IMAGE_ACTIONS = {"up": "U", "var": "V", "rr": "🔄", "del": "🗑", "one": "🖼"}


class ImageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"pg:(?P<action>up|var|rr|del|one):(?P<order_id>{ID}):(?P<n>[0-9])",
):
    def __init__(self, action: str, order_id: str, n: int) -> None:
        button: discord.ui.Button[discord.ui.View]
        if action in ("up", "var"):
            button = discord.ui.Button(
                label=f"{IMAGE_ACTIONS[action]}{n + 1}",
                style=discord.ButtonStyle.secondary,
                row=0 if action == "up" else 1,
                custom_id=f"pg:{action}:{order_id}:{n}",
            )
        elif action == "one":
            button = discord.ui.Button(
                label="Singles",
                emoji=IMAGE_ACTIONS[action],
                style=discord.ButtonStyle.secondary,
                row=2,
                custom_id=f"pg:{action}:{order_id}:{n}",
            )
        else:
            button = discord.ui.Button(
                emoji=IMAGE_ACTIONS[action],
                style=discord.ButtonStyle.danger if action == "del" else discord.ButtonStyle.primary,
                row=2,
                custom_id=f"pg:{action}:{order_id}:{n}",
            )
        super().__init__(button)
        self.action, self.order_id, self.n = action, order_id, n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ImageButton:
        return cls(match["action"], match["order_id"], int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        clicked = actions.result_clicked(_bot(interaction), interaction, self.action, self.order_id, self.n)
        await _guarded(interaction, self.action, clicked)


class ForgetConfirmButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"pg:forget:(?P<user_id>[0-9]{1,20})"
):
    def __init__(self, user_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Yes, delete everything",
                style=discord.ButtonStyle.danger,
                custom_id=f"pg:forget:{user_id}",
            )
        )
        self.user_id = user_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ForgetConfirmButton:
        return cls(int(match["user_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        confirmed = actions.forget_confirmed(_bot(interaction), interaction, self.user_id)
        await _guarded(interaction, "forget", confirmed)


BACKDROP_LABELS = {"white": "⬜ White", "grey": "🩶 Grey", "black": "⬛ Black", "blur": "🌫 Blurred"}


class BackdropButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"pg:bd:(?P<order_id>{ID})(?::(?P<n>[0-9]):(?P<style>white|grey|black|blur))?",
):
    """On a result: opens the member's backdrop picker; in the picker (``n`` and ``style``): places the order."""

    def __init__(self, order_id: str, n: int | None = None, style: str | None = None) -> None:
        if n is None or style is None:
            button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
                label="Clean backdrop",
                emoji="🪄",
                style=discord.ButtonStyle.secondary,
                row=3,
                custom_id=f"pg:bd:{order_id}",
            )
        else:
            button = discord.ui.Button(
                label=f"{n + 1}: {BACKDROP_LABELS[style]}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"pg:bd:{order_id}:{n}:{style}",
            )
        super().__init__(button)
        self.order_id, self.n, self.style = order_id, n, style

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BackdropButton:
        n = match["n"]
        return cls(match["order_id"], int(n) if n is not None else None, match["style"])

    async def callback(self, interaction: discord.Interaction) -> None:
        clicked = backdrops.clicked(_bot(interaction), interaction, self.order_id, self.n, self.style)
        await _guarded(interaction, "backdrop", clicked)


def backdrop_picker(order_id: str, shown: list[int]) -> discord.ui.View:
    """The member's private choice: one button per picture and backdrop."""
    view = discord.ui.View(timeout=None)
    for n in shown[:4]:
        for style in BACKDROP_LABELS:
            view.add_item(BackdropButton(order_id, n, style))
    return view


DYNAMIC_ITEMS = (CancelButton, ImageButton, ForgetConfirmButton, BackdropButton)


def status_view(order_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(order_id))
    return view


def result_view(
    order_id: str, count: int, *, shown: list[int] | None = None, upscaled: bool = False
) -> discord.ui.View:
    """U/V buttons for the pictures posted (``shown``, default all ``count``): no U on an upscaled picture,
    and none for a picture the safety check kept back."""
    view = discord.ui.View(timeout=None)
    pictures = list(range(count)) if shown is None else shown
    for action in ("var",) if upscaled else ("up", "var"):
        for n in pictures:
            view.add_item(ImageButton(action, order_id, n))
    view.add_item(ImageButton("rr", order_id, 0))
    if count > 1:  # the result shows one grid; the pictures one by one on request
        view.add_item(ImageButton("one", order_id, 0))
    view.add_item(ImageButton("del", order_id, 0))
    from bot.edit_views import EditButton  # (it imports this module)

    view.add_item(EditButton(order_id))
    view.add_item(BackdropButton(order_id))
    return view


def forget_view(user_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ForgetConfirmButton(user_id))
    return view


def model_choices(models: list[Any], current: str, *, ready_only: bool) -> list[app_commands.Choice[str]]:
    """Autocomplete over the caller's own models (the caller's list is passed in: never another member's)."""
    low = current.casefold()
    return [
        app_commands.Choice(name=m.name[:100], value=m.id)
        for m in models
        if (m.status == "ready" or not ready_only) and (low in m.name.casefold() or low in m.id)
    ][:25]
