"""Applying agent events and building the outbox posts (blocking parts of the delivery cog)."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import discord

from bot import costs, metrics
from bot.backends import Backends
from bot.embeds import GREEN, RED, clip, result_embed
from bot.services import likeness, media
from bot.wording import neutralise
from cloud.consumer import receive
from cloud.messages import Event
from cloud.queues.base import Lease
from storage import budget as budget_store
from storage import lifecycle
from storage.blobs.base import BlobNotFound
from storage.lifecycle import NOTICE_KIND, OutboxItem
from storage.metrics import JOB_OUTCOMES

__all__ = [
    "NOTICE_KIND",
    "UndeliverableError",
    "apply_event",
    "build_message",
    "nonce_for",
    "receive_events",
    "single_pictures",
]

EVENT_LEASE_S = 60

log = logging.getLogger(__name__)


class UndeliverableError(Exception):
    """The row can never be posted (its order or channel is gone): drop it instead of retrying forever."""


def receive_events(b: Backends, wait_s: float) -> list[tuple[Lease, Event]]:
    return receive(b.queues.events, Event, max_messages=10, wait_s=wait_s, lease_s=EVENT_LEASE_S)


def apply_event(b: Backends, event: Event) -> lifecycle.Applied:
    """One agent event → its order (storage.lifecycle), with the agent noted as seen, the GPU priced
    (bot/costs.py) and a forged event counted."""
    if event.agent_id:
        b.agents_seen[event.agent_id[:128]] = time.time()
    s = b.settings
    price = 0.0  # only finished jobs record their GPU time
    if event.kind in JOB_OUTCOMES:
        price = costs.price_of(s, event.instance_type, costs.market_of(s, event.job_kind)).per_hour
    applied = lifecycle.apply_event(
        b.engine, event, price_per_hour=price, advice_after=s.likeness_advice_after
    )
    if applied.forged is not None:
        log.warning("dropped event %s for order %s: %s", event.event_id, event.order_id, applied.forged)
        metrics.EVENTS_FORGED.inc()
    elif event.kind in JOB_OUTCOMES and not applied.duplicate and applied.order_id:
        from bot.services import budget

        budget.after_usage(b, applied.order_id)  # the server's 50/80/100 % budget alerts, into the outbox
    return applied


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
    if row.kind == budget_store.ALERT_KIND:  # a server's budget alert (bot/services/budget.py)
        return OutboxMessage(channel_id=int(p["log_channel_id"]), order_id=None, content=str(p["text"]))
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
        order = lifecycle.get_order(b.engine, row.order_id) if row.order_id else None
        params = order.params if order is not None else {}
        count = len(p.get("image_keys", []))
        msg.content = f"<@{user_id}>"
        pictured = (params.get("group") or {}).get("members") or []
        if pictured:  # a group picture (bot/services/group.py): everyone in it is told
            msg.content = " ".join(f"<@{int(u)}>" for u in pictured)
            msg.allowed_mentions = discord.AllowedMentions(
                everyone=False,
                roles=False,
                replied_user=False,
                users=[discord.Object(int(u)) for u in pictured],
            )
        if p.get("likeness"):
            msg.content += "\n" + likeness.words(p["likeness"], shown)
        if len(images) > 1:
            msg.attachments.append(("grid.jpg", media.grid([data for _, data in images])))
            images = []
        msg.view = (
            result_view(row.order_id or "", count, shown=shown, upscaled=p.get("mode") == "upscale")
            if shown
            else None
        )
        if pictured and shown:
            from bot.group_views import group_result_view

            msg.view = group_result_view(row.order_id or "", count, shown=shown)
        msg.embed = result_embed(
            title=params.get("title") or "Your pictures",
            seed=params.get("seed"),
            rerolled={
                i: s["seed"] for i, s in enumerate(p.get("likeness") or []) if s.get("seed") is not None
            },
            count=count,
            model=params.get("model_name"),
            style=params.get("style"),
        )
    else:
        msg.content = (
            f"<@{user_id}> your model **{neutralise(p.get('model_name', ''), 100)}** "
            "is trained and ready for /imagine."
        )
        if p.get("augmented"):
            msg.content += "\n" + augmented_words(p["augmented"])
        if p.get("likeness"):
            msg.content += "\n" + likeness.words(p["likeness"], shown)
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
    keys = lifecycle.image_keys(b.engine, order_id)
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


def augmented_words(augmented: dict[str, int]) -> str:
    """The line of a model-ready post whose small photo set was augmented before training."""
    photos, images = int(augmented["photos"]), int(augmented["images"])
    return (
        f"Few photos, so it was trained on {images} pictures made from {photos} of your photos (closer crops, "
        "mirror images, other light and new backgrounds). More photos of you, in other light and from other "
        "angles, give a closer likeness."
    )
