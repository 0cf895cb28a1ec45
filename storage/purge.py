"""A member's data in one server: what an admin's /admin purge deletes there (and only there).

Orders carry the server they were placed in; a model belongs to the server of the train order that made it; jobs,
pictures, outbox rows and applied events follow their order. ``guild_id`` ALL_GUILDS means every server (a bot
owner's purge, /forget-me). The member's standing (storage.standing) is never deleted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, select

from storage.models import AppliedEvent, Delivery, Image, Job, Order, TrainedModel
from storage.order_store import DeletionReceipt
from storage.standing import ALL_GUILDS, guild_key


@dataclass(frozen=True)
class MemberData:
    """The ids that name a member's blobs (storage.keys): photos per train order, renders/previews/checkpoints
    per job, weights per model."""

    order_ids: tuple[str, ...]
    train_order_ids: tuple[str, ...]
    job_ids: tuple[str, ...]
    model_ids: tuple[str, ...]


def _orders_query(user_id: object, guild_id: object) -> Any:
    query = select(Order.id).where(Order.user_id == str(user_id))
    if guild_id != ALL_GUILDS:
        key = guild_key(guild_id)
        no_guild = Order.guild_id.is_(None)  # type: ignore[union-attr]
        query = query.where(Order.guild_id == key) if key else query.where(no_guild)
    return query


def member_data(session: Session, user_id: object, guild_id: object) -> MemberData:
    uid = str(user_id)
    orders = list(
        session.exec(select(Order.id, Order.kind).where(Order.id.in_(_orders_query(uid, guild_id))))
    )  # type: ignore[attr-defined]
    order_ids = tuple(o for o, _ in orders)
    jobs = session.exec(select(Job.id).where(Job.order_id.in_(order_ids)))  # type: ignore[attr-defined]
    models = select(TrainedModel.id).where(TrainedModel.user_id == uid)
    if guild_id != ALL_GUILDS:
        models = models.where(TrainedModel.order_id.in_(order_ids))  # type: ignore[union-attr]
    return MemberData(
        order_ids=order_ids,
        train_order_ids=tuple(o for o, kind in orders if kind == "train"),
        job_ids=tuple(jobs),
        model_ids=tuple(session.exec(models)),
    )


def delete_member_data(session: Session, user_id: object, guild_id: object) -> DeletionReceipt:
    """Delete the member's rows in that server (orders, jobs, pictures, models, outbox, applied events). The
    member row and their standing stay; the blobs are the caller's (member_data names them)."""
    data = member_data(session, user_id, guild_id)
    ids = data.order_ids

    def _count(statement: Any) -> int:
        return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]

    events = _count(delete(AppliedEvent).where(AppliedEvent.order_id.in_(ids)))  # type: ignore[union-attr]
    deliveries = _count(delete(Delivery).where(Delivery.order_id.in_(ids)))  # type: ignore[union-attr]
    images = _count(delete(Image).where(Image.order_id.in_(ids)))  # type: ignore[attr-defined]
    jobs = _count(delete(Job).where(Job.order_id.in_(ids)))  # type: ignore[attr-defined]
    orders = _count(delete(Order).where(Order.id.in_(ids)))  # type: ignore[attr-defined]
    model_ids = TrainedModel.id.in_(data.model_ids)  # type: ignore[attr-defined]
    models = _count(delete(TrainedModel).where(model_ids))
    session.flush()
    session.expire_all()
    return DeletionReceipt(orders, jobs, images, models, deliveries, events, 0)
