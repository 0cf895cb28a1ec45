"""The Edit button on results and its modal (bot/services/edit_actions.py handles them), in the style of
bot/views.py.

custom_id layout (≤ 100 characters):
    pg:edit:{order_id}        ✏️ Edit on a result message (a modal asks what to change, and which picture)
    pg:editm:{order_id}       that modal
"""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.services import edit_actions
from bot.views import ID, _bot, _guarded

INSTRUCTION_MAX = 300


class EditButton(discord.ui.DynamicItem[discord.ui.Button], template=rf"pg:edit:(?P<order_id>{ID})"):
    def __init__(self, order_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Edit",
                emoji="✏️",
                style=discord.ButtonStyle.secondary,
                row=2,
                custom_id=f"pg:edit:{order_id}",
            )
        )
        self.order_id = order_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> EditButton:
        return cls(match["order_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await _guarded(
            interaction, "edit", edit_actions.edit_clicked(_bot(interaction), interaction, self.order_id)
        )


class EditModal(discord.ui.Modal):
    """What to change (and, on a grid, which picture): a short-lived form, answered within its timeout."""

    def __init__(self, order_id: str, count: int) -> None:
        super().__init__(title="Edit a picture", timeout=900, custom_id=f"pg:editm:{order_id}")
        self.order_id = order_id
        self.count = count
        self.instruction: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
            label="What to change",
            placeholder="e.g. make it night · give me a red scarf · turn it into a watercolour",
            max_length=INSTRUCTION_MAX,
            custom_id="instruction",
        )
        self.add_item(self.instruction)
        self.picture: discord.ui.TextInput[EditModal] | None = None
        if count > 1:
            self.picture = discord.ui.TextInput(
                label=f"Which picture (1–{count})", default="1", max_length=1, custom_id="picture"
            )
            self.add_item(self.picture)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        submitted = edit_actions.edit_submitted(
            _bot(interaction),
            interaction,
            self.order_id,
            self.count,
            instruction=self.instruction.value,
            picture=self.picture.value if self.picture is not None else "1",
        )
        await _guarded(interaction, "edit-modal", submitted)


EDIT_DYNAMIC_ITEMS = (EditButton,)
