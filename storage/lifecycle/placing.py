"""An order's life up to its agent and its endings outside the agent: placed (limits, credits, rows), queued,
sent again, failed, cancelled. Each function is one transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from storage import credits, standing, webhooks
from storage import order_store as rows
from storage.api_store import tenant_of_guild
from storage.contracts import JobKind, OrderStatus
from storage.db import read_session, transaction
from storage.lifecycle.records import LimitReached, Limits, NewModel
from storage.models import ACTIVE_STATUSES, now
from storage.tokens import new_subject_token as _pick_token
from storage.tokens import tokens_in_use

DAY_S = 86400.0


def _check_limits(s: Session, guild_id: int | None, user_id: int, limits: Limits, cost: int) -> None:
    """The member's limits in this server. Before their first order here, the starting credits count as theirs
    (create_order grants them, once ever)."""
    if standing.ban_reason(s, guild_id, user_id) is not None:
        raise LimitReached("You are banned from using Photogen here.", banned=True)
    row = standing.get_standing(s, guild_id, user_id)
    have = credits.balance(s, guild_id, user_id)
    if row is None or not row.starting_credits_granted:
        have += limits.starting_credits
    user_quota = row.daily_quota if row else None
    if rows.active_order_count(s, user_id) >= limits.max_concurrent:
        raise LimitReached(
            f"You already have {limits.max_concurrent} order(s) in progress. Wait for one to finish "
            "(see /orders) or cancel one with /cancel."
        )
    quota = user_quota or limits.daily_quota
    if standing.orders_since(s, guild_id, user_id, now() - DAY_S) >= quota:
        raise LimitReached(f"You reached your quota of {quota} orders a day. Try again tomorrow.")
    if have < cost:
        raise LimitReached(f"This costs {cost} credit(s) and you have {have}. Ask an admin for more.")


def precheck_order(engine: Engine, guild_id: int | None, user_id: int, limits: Limits, cost: int) -> None:
    """The limits, read-only, before expensive work (a /train's downloads and face checks); create_order
    checks again atomically. Raises LimitReached."""
    with read_session(engine) as s:
        _check_limits(s, guild_id, user_id, limits, cost)


def new_subject_token(engine: Engine) -> str:
    """A rare identifier no model in training or ready uses (storage/tokens.py): each model its own word."""
    with read_session(engine) as s:
        return _pick_token(tokens_in_use(s))


def create_order(
    engine: Engine,
    *,
    order_id: str,
    job_id: str,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    kind: JobKind,
    cost: int,
    params: dict[str, Any],
    job: dict[str, Any],
    limits: Limits,
    model: NewModel | None = None,
    model_id: str | None = None,
) -> int:
    """Check the limits, charge and write order + job (+ model) in ONE transaction: two commands racing for
    the last credit or the last open slot cannot both pass (LimitReached). ``job``: the queue message's body,
    kept so the order can be sent again. Returns the credits left."""
    with transaction(engine) as s:
        _check_limits(s, guild_id, user_id, limits, cost)
        rows.create_order(
            s,
            order_id=order_id,
            user_id=user_id,
            kind=kind,
            guild_id=guild_id,
            channel_id=channel_id,
            model_id=model.id if model else model_id,
            prompt=params.get("prompt"),
            params=params,
            charge=cost,
            starting_credits=limits.starting_credits,
        )
        rows.add_job(s, order_id, kind, job, job_id=job_id)
        if model is not None:
            rows.add_model(
                s,
                user_id=user_id,
                name=model.name,
                class_word=model.class_word,
                subject_token=model.subject_token,
                base_model=model.base_model,
                order_id=order_id,
                model_id=model.id,
            )
        return credits.balance(s, guild_id, user_id)


def mark_queued(engine: Engine, order_id: str) -> bool:
    """Its job is on the queue."""
    with transaction(engine) as s:
        moved = rows.mark_queued(s, order_id)
        if moved:
            webhooks.record_order_event(s, order_id)
        return moved


def _end(
    s: Session, order_id: str, to: OrderStatus, code: str, message: str | None, *, by: str | None = None
) -> int | None:
    """Fail or cancel, refund (a ledger entry, same transaction), and fail a train order's model; None when the
    order was final already. ``by``: who or what cancelled it (a member's or admin's id, or a code)."""
    if not rows.transition(s, order_id, to, error_code=code, error_message=message):
        return None
    webhooks.record_order_event(s, order_id)
    order = rows.get_order(s, order_id)
    actor, reason = credits.end_words(by, order.user_id) if by and order else (credits.SYSTEM, None)
    refunded = rows.refund_order(s, order_id, actor=actor, reason=reason)
    if order is not None and order.kind == JobKind.TRAIN and order.model_id:
        rows.mark_model_failed(s, order.model_id)
    return refunded


def fail_order(engine: Engine, order_id: str, code: str, message: str) -> int | None:
    """Fail and refund (``message`` is shown to the member); None when the order was final already."""
    with transaction(engine) as s:
        return _end(s, order_id, OrderStatus.FAILED, code, message)


def cancel_order(engine: Engine, order_id: str, *, by: str) -> int | None:
    """Cancel and refund; the credits refunded, or None when the order had already reached a final state."""
    with transaction(engine) as s:
        return _end(s, order_id, OrderStatus.CANCELLED, "cancelled", f"cancelled by {by}", by=by)


QuietOrder = tuple[str, OrderStatus, str, JobKind, int, dict[str, Any]]


def quiet_orders(engine: Engine, before: float) -> list[QuietOrder]:
    """Active orders unchanged since ``before``, oldest first, each as (order id, status, its first job's id,
    kind, sends so far, body): the reconciler's candidates."""
    with read_session(engine) as s:
        return [
            (o.id, OrderStatus(o.status), j.id, JobKind(j.kind), j.attempt, dict(j.payload))
            for o, j in rows.quiet_active_orders(s, before)
        ]


def still_quiet(engine: Engine, order_id: str, before: float) -> bool:
    """Active and unchanged since ``before`` (no event or cancel arrived meanwhile)."""
    with read_session(engine) as s:
        order = rows.get_order(s, order_id)
        return order is not None and order.status in ACTIVE_STATUSES and order.updated_at < before


def note_job_resent(engine: Engine, order_id: str, job_id: str) -> bool:
    """The reconciler sent the job again: one more send counted, a fresh time budget."""
    with transaction(engine) as s:
        return rows.note_job_resent(s, order_id, job_id)


def fail_stuck_order(engine: Engine, order_id: str, before: float, code: str, message: str) -> bool:
    """Fail and refund an order left without a live job, and queue the member's notice, in one transaction;
    False when news arrived since ``before`` or the order is final already."""
    with transaction(engine) as s:
        order = rows.get_order(s, order_id)
        if order is None or order.status not in ACTIVE_STATUSES or order.updated_at >= before:
            return False
        refunded = _end(s, order_id, OrderStatus.FAILED, code, message)
        if refunded is None:
            return False
        if tenant_of_guild(order.guild_id) is not None:
            return True  # an API order: its tenant's webhooks were told (in _end), there is no channel
        rows.add_delivery(
            s,
            order_id,
            "failed",
            {
                "channel_id": order.channel_id,
                "user_id": order.user_id,
                "message": message,
                "refunded": refunded,
            },
        )
        return True
