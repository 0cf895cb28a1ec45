"""Applying agent events and building the outbox posts (blocking parts of the delivery cog)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.backends import Backends
from bot.embeds import GREEN, RED, clip
from bot.services import media, store
from bot.services.records import OutboxItem
from bot.wording import neutralise
from cloud.consumer import receive
from cloud.messages import Event
from cloud.queues.base import Lease
from storage.blobs.base import BlobNotFound

__all__ = [
    "OutboxItem",
    "UndeliverableError",
    "apply_event",
    "build_message",
    "claim_outbox",
    "mark_outbox_sent",
    "nonce_for",
    "pending_outbox",
    "receive_events",
]

EVENT_LEASE_S = 60


class UndeliverableError(Exception):
    """The row can never be posted (its order or channel is gone): drop it instead of retrying forever."""


def receive_events(b: Backends, wait_s: float) -> list[tuple[Lease, Event]]:
    return receive(b.queues.events, Event, max_messages=10, wait_s=wait_s, lease_s=EVENT_LEASE_S)


def apply_event(b: Backends, event: Event) -> store.Applied:
    return store.apply_event(b, event)


def pending_outbox(b: Backends) -> list[OutboxItem]:
    return store.pending_outbox(b)


def claim_outbox(b: Backends, outbox_id: str) -> None:
    store.claim_outbox(b, outbox_id)


def mark_outbox_sent(b: Backends, outbox_id: str, message_id: int | None) -> None:
    store.mark_outbox_sent(b, outbox_id, message_id)


def nonce_for(outbox_id: str) -> str:
    """Discord nonces are at most 25 characters; the outbox id is hashed into one, stable across restarts."""
    return "pg" + hashlib.sha256(outbox_id.encode()).hexdigest()[:23]


@dataclass
class OutboxMessage:
    channel_id: int
    order_id: str | None
    content: str | None = None
    embed: discord.Embed | None = None
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
    view: discord.ui.View | None = None
    allowed_mentions: discord.AllowedMentions = field(default_factory=discord.AllowedMentions.none)

    def files(self) -> list[discord.File]:
        # A discord.File is consumed by one send; build fresh ones for every attempt.
        return [discord.File(io.BytesIO(data), filename=name) for name, data in self.attachments]


def _mention_owner(user_id: str) -> discord.AllowedMentions:
    # The owner hears about their result; nothing else in the text (a prompt, a name) can ping anyone.
    return discord.AllowedMentions(
        everyone=False, roles=False, replied_user=False, users=[discord.Object(int(user_id))]
    )


def build_message(b: Backends, row: OutboxItem, limit: int = media.DEFAULT_ATTACHMENT_LIMIT) -> OutboxMessage:
    """Blob reads, the grid and re-encoding happen here, in a thread."""
    from bot.views import result_view

    p: dict[str, Any] = row.payload
    if not p.get("channel_id"):
        raise UndeliverableError("no channel recorded for the order")
    msg = OutboxMessage(channel_id=int(p["channel_id"]), order_id=row.order_id)
    user_id = str(p["user_id"])
    msg.allowed_mentions = _mention_owner(user_id)
    if row.kind == "failed":
        msg.content = f"<@{user_id}>"
        msg.embed = discord.Embed(
            title="Your order failed",
            description=clip(p.get("message") or "Something went wrong.", 2000),
            colour=RED,
        )
        msg.embed.add_field(name="Order", value=f"`{row.order_id}`")
        if p.get("refunded"):
            msg.embed.add_field(name="Refunded", value=f"{p['refunded']} credit(s)")
        return msg

    images: list[tuple[str, bytes]] = []
    for i, key in enumerate(p.get("image_keys", [])):
        try:
            images.append((f"{i + 1}.png", b.blobs.get(key)))
        except BlobNotFound:
            continue
    links: list[str] = []
    if row.kind == "render_result":
        msg.content = f"<@{user_id}> {neutralise(p.get('prompt', ''), 1500)}"
        if images:
            msg.attachments.append(("grid.jpg", media.grid([data for _, data in images])))
        msg.view = result_view(row.order_id or "", len(images)) if images else None
    else:
        msg.content = f"<@{user_id}> your model **{neutralise(p.get('model_name', ''), 100)}** is trained and ready for /imagine."
        msg.embed = discord.Embed(title="Model ready", colour=GREEN)
        msg.embed.add_field(name="Order", value=f"`{row.order_id}`")
    for (name, data), key in zip(images, p.get("image_keys", []), strict=False):
        fitted = media.fit_attachment(data, name, limit)
        if fitted is None:
            links.append(b.blobs.url(key, expires_s=b.settings.blob_url_expiry_s))
        else:
            msg.attachments.append(fitted)
    if links:
        msg.content = (msg.content or "") + "\n" + "\n".join(f"<{u}>" for u in links)
    return msg
