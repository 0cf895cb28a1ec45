"""Answering an interaction the right way whatever state its response is in."""

from __future__ import annotations

import logging

import discord

from bot.embeds import error_embed

log = logging.getLogger(__name__)


async def reply_error(interaction: discord.Interaction, message: str) -> None:
    """Ephemeral when still possible; after a public defer the deferred message itself shows the error."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(embed=error_embed(message), ephemeral=True)
        elif interaction.response.type in (
            discord.InteractionResponseType.deferred_channel_message,
            discord.InteractionResponseType.channel_message,
        ):
            await interaction.edit_original_response(content=None, embed=error_embed(message), view=None)
        else:
            await interaction.followup.send(embed=error_embed(message), ephemeral=True)
    except discord.HTTPException:
        # The interaction token may be gone (15 minutes): nothing left to tell the member through it.
        log.warning("could not deliver an error reply for interaction %s", interaction.id)
