"""Answering an interaction the right way whatever state its response is in."""

from __future__ import annotations

import contextlib
import logging

import discord

from bot.embeds import error_embed

log = logging.getLogger(__name__)


async def reply_error(interaction: discord.Interaction, message: str) -> None:
    """Always ephemeral: a refusal may tell something about the member (a ban and its reason, a balance)."""
    await reply_private(interaction, error_embed(message))


async def reply_private(
    interaction: discord.Interaction, embed: discord.Embed, content: str | None = None
) -> None:
    """An answer only the member sees, whatever state the response is in.

    Before any response it is the ephemeral response. After a defer ("thinking…", public for commands whose
    result is public) the placeholder is deleted and the answer follows up ephemerally, so the channel never
    sees it; after a message was already sent, the answer is an ephemeral followup beside it."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(content=content, embed=embed, ephemeral=True)
            return
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            with contextlib.suppress(discord.NotFound):  # already gone
                await interaction.delete_original_response()
        # discord.py takes None for "no text" and "no embed"; its overloads name only str and Embed
        await interaction.followup.send(content=content, embed=embed, ephemeral=True)  # type: ignore[arg-type]
    except discord.HTTPException:
        # The interaction token may be gone (15 minutes): nothing left to tell the member through it.
        log.warning("could not deliver a private reply for interaction %s", interaction.id)
