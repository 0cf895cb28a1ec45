"""Delivery: the outbox rows an event (or a failure) queued, posted by the bot exactly once. Each function is
one transaction."""

from __future__ import annotations

from sqlalchemy import Engine, update

from storage import order_store as rows
from storage.db import read_session, transaction
from storage.lifecycle.records import GaveUp, OutboxItem
from storage.models import Delivery, now

#: The plain notice a member gets when a post of theirs was given up.
NOTICE_KIND = "delivery_failed"


def pending_outbox(engine: Engine, limit: int = 50) -> list[OutboxItem]:
    """Posts not made yet, oldest first."""
    with read_session(engine) as s:
        return [
            OutboxItem(d.id, d.order_id, d.kind, dict(d.payload), d.attempts)
            for d in rows.pending_deliveries(s, limit)
        ]


def claim_outbox(engine: Engine, outbox_id: str) -> None:
    """Count the attempt before posting: a row that keeps failing shows it in ``attempts``."""
    with transaction(engine) as s:
        s.execute(
            update(Delivery)
            .where(Delivery.id == outbox_id)  # type: ignore[arg-type]
            .values(attempts=Delivery.attempts + 1, updated_at=now())
        )


def mark_outbox_sent(engine: Engine, outbox_id: str, message_id: int | None) -> bool:
    """Record the Discord message that carried the post (None: it can never be posted); False if it was
    marked before."""
    with transaction(engine) as s:
        return rows.mark_sent(s, outbox_id, message_id if message_id is not None else "undeliverable")


def give_up_outbox(engine: Engine, row: OutboxItem, error: str, max_attempts: int) -> GaveUp | None:
    """Count one failed post of ``row``. At ``max_attempts`` the row is marked failed and, in the same
    transaction, a plain notice to the member is queued (no notice for a notice: that could loop). None while
    retrying."""
    with transaction(engine) as s:
        if not rows.give_up_delivery(s, row.id, error, max_attempts):
            return None
        order = rows.get_order(s, row.order_id) if row.order_id else None
        if row.kind != NOTICE_KIND and row.payload.get("channel_id"):
            notice = {"channel_id": row.payload["channel_id"], "user_id": row.payload.get("user_id")}
            rows.add_delivery(s, row.order_id, NOTICE_KIND, notice)
        stored = s.get(Delivery, row.id)
        attempts = stored.attempts if stored else row.attempts
        return GaveUp(row.id, row.order_id, row.kind, order.guild_id if order else None, attempts, error)
