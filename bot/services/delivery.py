"""Applying agent events and building the outbox posts (blocking parts of the delivery cog)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.backends import Backends
from bot.embeds import GREEN, RED, clip, result_embed
from bot.services import likeness, media, store
from bot.services.records import OutboxItem
from bot.wording import neutralise
from cloud.consumer import receive
from cloud.messages import Event
from cloud.queues.base import Lease
from storage import Delivery, orders, transaction
from storage.blobs.base import BlobNotFound

__all__ = [
    "GaveUp",
    "OutboxItem",
    "UndeliverableError",
    "apply_event",
    "build_message",
    "claim_outbox",
    "give_up_outbox",
    "mark_outbox_sent",
    "nonce_for",
    "pending_outbox",
    "receive_events",
    "single_pictures",
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


@dataclass(frozen=True)
class GaveUp:
    """An outbox row given up after DELIVERY_MAX_ATTEMPTS: what the admins' alert names."""

    outbox_id: str
    order_id: str | None
    kind: str
    guild_id: str | None
    attempts: int
    error: str


NOTICE_KIND = "delivery_failed"


def give_up_outbox(b: Backends, row: OutboxItem, error: str) -> GaveUp | None:
    """Count one failed post of ``row``. At the cap the row is marked failed and, in the same transaction, a
    plain notice to the member is queued (no notice for a notice: that could loop). None while retrying."""
    with transaction(b.engine) as s:
        if not orders.give_up_delivery(s, row.id, error, b.settings.delivery_max_attempts):
            return None
        order = orders.get_order(s, row.order_id) if row.order_id else None
        if row.kind != NOTICE_KIND and row.payload.get("channel_id"):
            orders.add_delivery(
                s,
                row.order_id,
                NOTICE_KIND,
                {"channel_id": row.payload["channel_id"], "user_id": row.payload.get("user_id")},
            )
        stored = s.get(Delivery, row.id)
        attempts = stored.attempts if stored else row.attempts
        return GaveUp(row.id, row.order_id, row.kind, order.guild_id if order else None, attempts, error)


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


def build_message(
    b: Backends, row: OutboxItem, limit: int = media.DEFAULT_ATTACHMENT_LIMIT, *, channel_nsfw: bool = False
) -> OutboxMessage:
    """Blob reads, the grid and re-encoding happen here, in a thread. Pictures go through the server's
    safety policy first (bot/services/safety.py); ``channel_nsfw``: Discord's age-restricted flag."""
    from bot.services import safety
    from bot.views import result_view

    p: dict[str, Any] = row.payload
    if not p.get("channel_id"):
        raise UndeliverableError("no channel recorded for the order")
    msg = OutboxMessage(channel_id=int(p["channel_id"]), order_id=row.order_id)
    user_id = str(p["user_id"])
    msg.allowed_mentions = _mention_owner(user_id)
    if row.kind == NOTICE_KIND:
        msg.content = (
            f"<@{user_id}> we could not post the result of your order `{row.order_id}`. "
            "The admins have been told and will look into it."
        )
        return msg
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

    if row.kind == "likeness_advice":
        msg.content = f"<@{user_id}>"
        msg.embed = discord.Embed(title="Tips for better likeness", description=likeness.advice_text(p))
        return msg

    screened = safety.screen(b, p, row.order_id, channel_nsfw=channel_nsfw)
    images: list[tuple[str, bytes]] = []
    posted_keys: list[str] = []
    shown: list[int] = []
    for i, key in enumerate(p.get("image_keys", [])):
        if i not in screened.shown:
            continue
        try:
            images.append((f"{i + 1}.png", b.blobs.get(key)))
        except BlobNotFound:
            continue
        posted_keys.append(key)
        shown.append(i)
    links: list[str] = []
    if row.kind == "render_result":
        # One grid (or the one picture) under an embed headed with the member's own words; the singles come on
        # request (the Singles button) or one at a time through U.
        order = store.get_order(b, row.order_id) if row.order_id else None
        params = order.params if order is not None else {}
        count = len(p.get("image_keys", []))
        msg.content = f"<@{user_id}>"
        if p.get("likeness"):
            msg.content += "\n" + likeness.words(p["likeness"])
        if len(images) > 1:
            msg.attachments.append(("grid.jpg", media.grid([data for _, data in images])))
            images = []
        msg.view = (
            result_view(row.order_id or "", count, shown=shown, upscaled=p.get("mode") == "upscale")
            if shown
            else None
        )
        msg.embed = result_embed(
            title=params.get("title") or "Your pictures",
            seed=params.get("seed"),
            count=count,
            model=params.get("model_name"),
            style=params.get("style"),
        )
    else:
        msg.content = (
            f"<@{user_id}> your model **{neutralise(p.get('model_name', ''), 100)}** "
            "is trained and ready for /imagine."
        )
        if p.get("likeness"):
            msg.content += "\n" + likeness.words(p["likeness"])
        msg.embed = discord.Embed(title="Model ready", colour=GREEN)
        msg.embed.add_field(name="Order", value=f"`{row.order_id}`")
    if screened.notices:
        msg.content = (msg.content or "") + "\n" + "\n".join(screened.notices)
    for (name, data), key in zip(images, posted_keys, strict=False):
        fitted = media.fit_attachment(data, name, limit)
        if fitted is None:
            links.append(b.blobs.url(key, expires_s=b.settings.blob_url_expiry_s))
        else:
            msg.attachments.append(fitted)
    if links:
        msg.content = (msg.content or "") + "\n" + "\n".join(f"<{u}>" for u in links)
    if row.kind == "render_result" and msg.embed is not None and msg.attachments:
        msg.embed.set_image(url=f"attachment://{msg.attachments[0][0]}")
    return msg


def single_pictures(
    b: Backends, order_id: str, limit: int = media.DEFAULT_ATTACHMENT_LIMIT
) -> list[tuple[str, bytes]]:
    """The pictures of a result one by one (the Singles button), each fitted to the attachment limit and all
    together inside one message's."""
    keys = store.image_keys(b, order_id)
    out: list[tuple[str, bytes]] = []
    for i, key in enumerate(keys):
        try:
            data = b.blobs.get(key)
        except BlobNotFound:
            continue
        fitted = media.fit_attachment(data, f"{i + 1}.png", limit // max(len(keys), 1))
        if fitted is not None:
            out.append(fitted)
    return out
