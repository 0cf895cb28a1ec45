"""What the bot shows of orders and models: plain records, read in one session each."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import select

from storage import order_store as rows
from storage.contracts import OrderStatus
from storage.db import read_session, transaction
from storage.lifecycle.records import ModelView, OrderView
from storage.models import Order


def get_order(engine: Engine, order_id: str) -> OrderView | None:
    with read_session(engine) as s:
        o = rows.get_order(s, order_id)
        return OrderView.of(o) if o else None


def list_orders(
    engine: Engine, user_id: int, *, limit: int = 15, active_only: bool = False
) -> list[OrderView]:
    """The member's orders, newest first."""
    with read_session(engine) as s:
        found = rows.orders_of_user(s, user_id, limit=limit, active_only=active_only)
        return [OrderView.of(o) for o in found]


def list_models(engine: Engine, user_id: int) -> list[ModelView]:
    """The member's models, newest first."""
    with read_session(engine) as s:
        return [ModelView.of(m) for m in rows.models_of_user(s, user_id)]


def image_keys(engine: Engine, order_id: str) -> list[str]:
    """The blob keys of the order's delivered pictures, in order."""
    with read_session(engine) as s:
        return [i.blob_key for i in rows.images_of_order(s, order_id)]


def job_id_of(engine: Engine, order_id: str) -> str | None:
    """The order's first job."""
    with read_session(engine) as s:
        jobs = rows.jobs_of_order(s, order_id)
        return jobs[0].id if jobs else None


def queue_position(engine: Engine, order_id: str) -> tuple[int, float | None]:
    """(position, ETA seconds): 1 for the next of its kind to start, 0 once started or unknown; the ETA is the
    position times the recent average duration of that kind (None before any was delivered)."""
    with read_session(engine) as s:
        order = rows.get_order(s, order_id)
        if order is None:
            return 0, None
        position = rows.queue_position(s, order_id) or 0
        recent = s.exec(
            select(Order.updated_at - Order.created_at)
            .where(Order.kind == order.kind, Order.status == OrderStatus.DELIVERED)
            .order_by(Order.updated_at.desc())  # type: ignore[attr-defined]
            .limit(20)
        ).all()
        if not recent:
            return position, None
        return position, max(position, 1) * (sum(recent) / len(recent))


def set_status_message(engine: Engine, order_id: str, message_id: int) -> None:
    """The Discord message that shows the order's status (edited as events arrive)."""
    with transaction(engine) as s:
        rows.set_status_message(s, order_id, message_id)
