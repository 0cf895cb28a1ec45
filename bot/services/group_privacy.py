"""What a group picture means for the members pictured once asked for: /orders shows it to them, any of
them may delete it (🗑), deleting their model or /forget-me ends or removes it (docs/PRIVACY.md).
Blocking, except ``delete_posts``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from bot.backends import Backends
from bot.errors import NotAllowed
from bot.services.group import end_order, pictured
from storage import Delivery, consent, keys, lifecycle, order_store, read_session, transaction
from storage.lifecycle import OrderView
from storage.models import ACTIVE_STATUSES


def model_withdrawn(b: Backends, user_id: int, model_id: str) -> list[str]:
    """A member deleted a model: every open group picture drawn with it ends (refunded, the agent stops)."""
    with read_session(b.engine) as s:
        order_ids = consent.orders_using_model(s, user_id, model_id)
    message = "A member deleted the model this picture needed: nothing more is rendered; credits refunded."
    ended = []
    for order_id in order_ids:
        order = lifecycle.get_order(b.engine, order_id)
        if order is not None and order.status in ACTIVE_STATUSES:
            end_order(b, order_id, "revoked", message)
            ended.append(order_id)
    return ended


def delete_post(b: Backends, order_id: str, user_id: int) -> int:
    """🗑 by anyone pictured: the pictures (rows and files) go; a member other than the caller withdraws, so no
    re-roll pictures them again."""
    order = lifecycle.get_order(b.engine, order_id)
    if order is None or str(user_id) not in pictured(b, order_id):
        raise NotAllowed("These buttons belong to the members in the picture.")
    deleted = lifecycle.delete_images(b.engine, order_id)
    job_id = lifecycle.job_id_of(b.engine, order_id)
    if job_id:
        b.blobs.delete_prefix(keys.render_prefix(order.user_id, job_id))
    if str(user_id) != order.user_id:
        with transaction(b.engine) as s:
            consent.revoke(s, order_id, user_id)
    return deleted


# --- /orders and /forget-me ---------------------------------------------------------------------------------


def orders_seen_by(b: Backends, user_id: int, limit: int = 15) -> list[tuple[OrderView, bool]]:
    """The member's own orders and the group pictures others made of them (True), newest first."""
    own = [(o, False) for o in lifecycle.list_orders(b.engine, user_id, limit=limit, active_only=False)]
    with read_session(b.engine) as s:
        ids = consent.pictured_order_ids(s, user_id)
    theirs = [(o, True) for o in (lifecycle.get_order(b.engine, i) for i in ids) if o is not None]
    both = sorted(own + theirs, key=lambda pair: pair[0].created_ts, reverse=True)
    return both[:limit]


@dataclass(frozen=True)
class Post:
    channel_id: int
    message_id: int


def forget_pictured(b: Backends, user_id: int) -> list[Post]:
    """/forget-me of a member pictured in others' group pictures: open ones end (refunded, the agent stops),
    delivered ones lose their pictures (rows and files), and their consent rows go. Returns the posts to
    delete from Discord."""
    with read_session(b.engine) as s:
        ids = consent.pictured_order_ids(s, user_id)
    posts: list[Post] = []
    for order_id in ids:
        order = lifecycle.get_order(b.engine, order_id)
        if order is None:
            continue
        if order.status in ACTIVE_STATUSES:
            end_order(
                b,
                order_id,
                "forgotten",
                "A member in this picture deleted their data: nothing more is rendered; credits refunded.",
            )
        lifecycle.delete_images(b.engine, order_id)
        job_id = lifecycle.job_id_of(b.engine, order_id)
        if job_id:
            b.blobs.delete_prefix(keys.render_prefix(order.user_id, job_id))
        with read_session(b.engine) as s:
            sent = s.exec(
                select(Delivery).where(
                    Delivery.order_id == order_id,
                    Delivery.kind == "render_result",
                    col(Delivery.discord_message_id).is_not(None),
                )
            ).all()
            posts += [
                Post(int(d.payload["channel_id"]), int(d.discord_message_id))
                for d in sent
                if d.payload.get("channel_id") and str(d.discord_message_id).isdigit()
            ]
    with transaction(b.engine) as s:
        for order_id in ids:
            _scrub_member(s, order_id, str(user_id))
        consent.delete_member(s, user_id)
    return posts


async def delete_posts(bot: Any, posts: list[Post]) -> None:
    """Delete posted group pictures from Discord (bot token; a post already gone is fine)."""
    import discord

    for post in posts:
        # deleted already, or the channel is gone: nothing left to show
        with contextlib.suppress(discord.HTTPException):
            await bot.get_partial_messageable(post.channel_id).get_partial_message(post.message_id).delete()


def _scrub_member(s: Any, order_id: str, user_id: str) -> None:
    """The caller's order keeps its row, but no longer the forgotten member's id or model (params, job)."""
    order = order_store.get_order(s, order_id)
    if order is not None and order.params.get("group"):
        group = dict(order.params["group"])
        group["members"] = [u for u in group.get("members", []) if u != user_id]
        order.params = {**order.params, "group": group}
        s.add(order)
    for job in order_store.jobs_of_order(s, order_id):
        if job.payload.get("members"):
            members = [m for m in job.payload["members"] if m.get("user_id") != user_id]
            job.payload = {**job.payload, "members": members}
            s.add(job)
