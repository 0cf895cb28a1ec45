"""Persistent buttons of group pictures (bot/services/group_actions.py handles them), in the style of bot/views.py.

custom_id layout (≤ 100 characters):
    pg:gc:{order_id}:{user_id}:{a|r|w}   Accept / Refuse / Withdraw, that member's alone
    pg:g{var|rr|del|one}:{order_id}:{n}  V1–V4, 🔄 re-roll, 🗑 delete, Singles on a group result
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.services import group_actions
from bot.views import ID, IMAGE_ACTIONS, _bot, _guarded

_CONSENT = {
    "a": ("Accept", discord.ButtonStyle.success),
    "r": ("Refuse", discord.ButtonStyle.danger),
    "w": ("Withdraw my consent", discord.ButtonStyle.danger),
}


class ConsentButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"pg:gc:(?P<order_id>{ID}):(?P<user_id>[0-9]{{1,20}}):(?P<answer>[arw])",
):
    def __init__(self, order_id: str, user_id: int, answer: str) -> None:
        label, style = _CONSENT[answer]
        custom_id = f"pg:gc:{order_id}:{user_id}:{answer}"
        super().__init__(discord.ui.Button(label=label, style=style, custom_id=custom_id))
        self.order_id, self.user_id, self.answer = order_id, user_id, answer

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ConsentButton:
        return cls(match["order_id"], int(match["user_id"]), match["answer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        answered = group_actions.consent(
            _bot(interaction), interaction, self.order_id, self.user_id, self.answer
        )
        await _guarded(interaction, "consent", answered)


class GroupImageButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"pg:g(?P<action>var|rr|del|one):(?P<order_id>{ID}):(?P<n>[0-9])",
):
    def __init__(self, action: str, order_id: str, n: int) -> None:
        custom_id = f"pg:g{action}:{order_id}:{n}"
        button: discord.ui.Button[Any]
        if action == "var":
            button = discord.ui.Button(
                label=f"V{n + 1}", style=discord.ButtonStyle.secondary, row=0, custom_id=custom_id
            )
        elif action == "one":
            button = discord.ui.Button(
                label="Singles",
                emoji=IMAGE_ACTIONS[action],
                row=1,
                style=discord.ButtonStyle.secondary,
                custom_id=custom_id,
            )
        else:
            button = discord.ui.Button(
                emoji=IMAGE_ACTIONS[action],
                row=1,
                custom_id=custom_id,
                style=discord.ButtonStyle.danger if action == "del" else discord.ButtonStyle.primary,
            )
        super().__init__(button)
        self.action, self.order_id, self.n = action, order_id, n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GroupImageButton:
        return cls(match["action"], match["order_id"], int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        clicked = group_actions.image_button(
            _bot(interaction), interaction, self.action, self.order_id, self.n
        )
        await _guarded(interaction, f"g{self.action}", clicked)


GROUP_DYNAMIC_ITEMS = (ConsentButton, GroupImageButton)


def consent_view(order_id: str, user_id: int, *, accepted: bool = False) -> discord.ui.View:
    """Accept / Refuse while asked; Withdraw once accepted (until the picture is delivered)."""
    view = discord.ui.View(timeout=None)
    for answer in ("w",) if accepted else ("a", "r"):
        view.add_item(ConsentButton(order_id, user_id, answer))
    return view


def group_result_view(order_id: str, count: int, *, shown: list[int]) -> discord.ui.View:
    """V per picture shown, 🔄 and Singles (the caller), 🗑 (anyone pictured). No upscale: it would redraw
    every face with one member's model."""
    view = discord.ui.View(timeout=None)
    for n in shown:
        view.add_item(GroupImageButton("var", order_id, n))
    view.add_item(GroupImageButton("rr", order_id, 0))
    if count > 1:
        view.add_item(GroupImageButton("one", order_id, 0))
    view.add_item(GroupImageButton("del", order_id, 0))
    return view
