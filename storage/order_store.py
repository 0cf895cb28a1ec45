"""Order store operations: order life, idempotent events, the delivery outbox, credits, queries, audit.

Every function takes an open Session and never commits: the caller wraps one unit of work in
``storage.transaction(engine)``, so a state change, its event id, its outbox row and its credit movement commit
together or not at all.

State changes never raise for a stale or impossible move (a redelivered or out-of-order event is normal in an
at-least-once system): they return False and change nothing. Discord ids may be passed as int or str.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from sqlalchemy import delete, func, or_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from storage import credits, standing
from storage.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ORDER_FLOW,
    ORDER_KINDS,
    AppliedEvent,
    AuditEntry,
    Delivery,
    GuildSettings,
    Image,
    Job,
    Order,
    TrainedModel,
    User,
    new_id,
    now,
)

# Statuses a render order passes through; a train order may pass through all of ORDER_FLOW (it renders its
# first pictures when training ends).
_RENDER_FLOW = ("created", "queued", "rendering", "delivered")


class OrderStoreError(Exception):
    """Base of the order store's errors (bad arguments, missing rows, not enough credits)."""


class UnknownOrder(OrderStoreError, LookupError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"no order {order_id!r}")
        self.order_id = order_id


class InsufficientCredits(OrderStoreError):
    def __init__(self, user_id: str, needed: int, available: int) -> None:
        super().__init__(f"user {user_id} needs {needed} credits and has {available}")
        self.user_id, self.needed, self.available = user_id, needed, available


def _sid(value: object) -> str:
    return str(value)


def _amount(amount: int) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise OrderStoreError(f"credit amount must be a non-negative integer, got {amount!r}")
    return amount


# --- members -----------------------------------------------------------------------------------------------


def get_or_create_user(session: Session, user_id: object) -> User:
    """The member's row (identity and consent; credits, bans and quotas are per server: storage.standing)."""
    uid = _sid(user_id)
    # ON CONFLICT DO NOTHING: two writers creating the same member never collide.
    session.execute(
        sqlite_insert(User).values(id=uid, created_at=now()).on_conflict_do_nothing(index_elements=["id"])
    )
    user = session.get(User, uid, populate_existing=True)
    assert user is not None
    return user


def get_user(session: Session, user_id: object) -> User | None:
    return session.get(User, _sid(user_id))


def record_consent(session: Session, user_id: object, at: float | None = None) -> User:
    user = get_or_create_user(session, user_id)
    user.consent_at = now() if at is None else at
    session.add(user)
    return user


# --- guild settings --------------------------------------------------------------------------------------------

_GUILD_FIELDS = frozenset(GuildSettings.model_fields) - {"guild_id", "updated_at"}


def get_guild_settings(session: Session, guild_id: object) -> GuildSettings:
    """The guild's settings, or the defaults (not written) for a guild that never changed any."""
    gid = _sid(guild_id)
    return session.get(GuildSettings, gid) or GuildSettings(guild_id=gid)


def update_guild_settings(session: Session, guild_id: object, **changes: Any) -> GuildSettings:
    """Change some of a guild's settings (``paused=True``, ``blocked_words=[...]`` …)."""
    unknown = set(changes) - _GUILD_FIELDS
    if unknown:
        raise OrderStoreError(f"unknown guild setting(s): {', '.join(sorted(unknown))}")
    gid = _sid(guild_id)
    row = session.get(GuildSettings, gid) or GuildSettings(guild_id=gid)
    for name, value in changes.items():
        if name in ("allowed_channel_ids", "blocked_words"):
            value = [str(v) for v in value]
        elif name.endswith("_id") and value is not None:
            value = str(value)
        setattr(row, name, value)
    row.updated_at = now()
    session.add(row)
    session.flush()
    return row


# --- orders ------------------------------------------------------------------------------------------------------


def create_order(
    session: Session,
    *,
    user_id: object,
    kind: str,
    guild_id: object | None = None,
    channel_id: object | None = None,
    model_id: str | None = None,
    prompt: str | None = None,
    params: dict[str, Any] | None = None,
    charge: int = 0,
    starting_credits: int = 0,
    order_id: str | None = None,
) -> Order:
    """A new order in ``created``; charges ``charge`` of the member's credits in that server in the same
    transaction (InsufficientCredits leaves nothing behind once the caller's transaction rolls back). The
    member's first order in a server grants ``starting_credits`` there, once ever; every order counts towards
    the daily quota (storage.standing)."""
    if kind not in ORDER_KINDS:
        raise OrderStoreError(f"order kind must be one of {', '.join(ORDER_KINDS)}, got {kind!r}")
    uid = _sid(user_id)
    get_or_create_user(session, uid)
    if starting_credits:
        credits.grant_starting(session, guild_id, uid, starting_credits)
    standing.note_order(session, guild_id, uid)
    order = Order(
        id=order_id or new_id(),
        user_id=uid,
        guild_id=None if guild_id is None else _sid(guild_id),
        channel_id=None if channel_id is None else _sid(channel_id),
        kind=kind,
        model_id=model_id,
        prompt=prompt,
        params=dict(params or {}),
    )
    session.add(order)
    session.flush()
    credits.charge(session, order, charge)  # the ledger's charge entry (InsufficientCredits: nothing kept)
    return order


def get_order(session: Session, order_id: str) -> Order | None:
    return session.get(Order, order_id)


def _require(session: Session, order_id: str) -> Order:
    order = session.get(Order, order_id, populate_existing=True)
    if order is None:
        raise UnknownOrder(order_id)
    return order


def can_move(order: Order, to: str) -> bool:
    """True when ``to`` is a forward move for this order (never out of a final state)."""
    if order.status in FINAL_STATUSES:
        return False
    if to in ("failed", "cancelled"):
        return True
    flow = ORDER_FLOW if order.kind == "train" else _RENDER_FLOW
    if to not in flow or order.status not in flow:
        return False
    return flow.index(to) > flow.index(order.status)


def transition(
    session: Session,
    order_id: str,
    to: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    """Move an order forward to ``to``. A stale, backward or impossible move returns False and changes nothing.
    Skipping ahead is allowed (events may be lost or arrive late: a ``done`` may overtake its ``started``)."""
    order = _require(session, order_id)
    if not can_move(order, to):
        return False
    order.status = to
    if to in ("failed", "cancelled"):
        order.error_code, order.error_message = error_code, error_message
    if to in ("trained", "delivered", "failed", "cancelled"):
        order.progress_eta_s = None
    order.updated_at = now()
    session.add(order)
    session.flush()
    return True


def mark_queued(session: Session, order_id: str) -> bool:
    return transition(session, order_id, "queued")


def mark_training(session: Session, order_id: str) -> bool:
    return transition(session, order_id, "training")


def mark_trained(session: Session, order_id: str) -> bool:
    return transition(session, order_id, "trained")


def mark_rendering(session: Session, order_id: str) -> bool:
    return transition(session, order_id, "rendering")


def mark_delivered(session: Session, order_id: str) -> bool:
    return transition(session, order_id, "delivered")


def mark_failed(session: Session, order_id: str, code: str, message: str) -> bool:
    """``message`` is shown to the member: keep it user-safe."""
    return transition(session, order_id, "failed", error_code=code, error_message=message)


def mark_cancelled(session: Session, order_id: str, reason: str | None = None) -> bool:
    return transition(session, order_id, "cancelled", error_code="cancelled", error_message=reason)


def refund_order(
    session: Session, order_id: str, *, actor: object = "system", reason: str | None = None
) -> int:
    """Give back what the order charged and has not refunded yet (a ledger entry: storage/credits.py); returns
    the credits refunded (0 the second time)."""
    return credits.refund(session, _require(session, order_id), actor=actor, reason=reason)


def record_progress(
    session: Session,
    order_id: str,
    *,
    step: int,
    total: int,
    eta_s: float | None = None,
    preview_key: str | None = None,
) -> bool:
    """Remember the latest progress of a running order. Stale progress (an earlier step of the same phase) and
    progress on a finished order are ignored (False)."""
    order = _require(session, order_id)
    if order.status in FINAL_STATUSES:
        return False
    same_phase = order.progress_total == total
    if same_phase and order.progress_step is not None and step < order.progress_step:
        return False
    order.progress_step, order.progress_total, order.progress_eta_s = step, total, eta_s
    if preview_key is not None:
        order.preview_key = preview_key
    order.updated_at = now()
    session.add(order)
    return True


def set_status_message(session: Session, order_id: str, message_id: object) -> None:
    order = _require(session, order_id)
    order.status_message_id = _sid(message_id)
    session.add(order)


# --- events --------------------------------------------------------------------------------------------------


def claim_event(session: Session, event_id: str, order_id: str | None = None) -> bool:
    """Record ``event_id`` as applied; False if it already was. Do the event's changes in the same transaction
    only when this returns True, and an event applied twice changes nothing."""
    result = session.execute(
        sqlite_insert(AppliedEvent)
        .values(event_id=event_id, order_id=order_id, applied_at=now())
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class NewDelivery:
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class NewImage:
    blob_key: str
    index: int
    job_id: str | None = None
    seed: int | None = None
    prompt: str | None = None
    likeness_verdict: str | None = None
    likeness_score: float | None = None
    likeness_tries: int | None = None


@dataclass(frozen=True)
class EventOutcome:
    applied: bool  # False: this event id was seen before and nothing changed
    moved: bool  # the order's status changed
    status: str | None  # the order's status afterwards (None for an unknown order)


def apply_event(
    session: Session,
    event_id: str,
    order_id: str,
    *,
    status: str | None = None,
    step: int | None = None,
    total: int | None = None,
    eta_s: float | None = None,
    preview_key: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    deliveries: Sequence[NewDelivery] = (),
    images: Sequence[NewImage] = (),
    refund_on_failure: bool = True,
    notice: str | EllipsisType | None = ...,
) -> EventOutcome:
    """Apply one agent event to its order exactly once.

    The first time ``event_id`` is seen: records it, moves the order to ``status`` (if that is a forward move),
    stores progress, images and outbox rows — all in the caller's transaction. Outbox rows are only written
    when the event moved the order, or carries no status at all, so a stale ``done`` cannot post twice.
    A failure (status failed/cancelled) refunds the order unless ``refund_on_failure`` is False. ``notice``
    replaces the order's passing notice (None clears it; the default ``...`` leaves it). Progress is stored before
    the status moves, so a ``done`` event's last step still counts.
    An unknown order records the event id and changes nothing else.
    """
    if not claim_event(session, event_id, order_id):
        order = session.get(Order, order_id)
        return EventOutcome(applied=False, moved=False, status=order.status if order else None)
    order = session.get(Order, order_id, populate_existing=True)
    if order is None:
        return EventOutcome(applied=True, moved=False, status=None)
    moved = False
    if step is not None and total is not None:
        record_progress(session, order_id, step=step, total=total, eta_s=eta_s, preview_key=preview_key)
    if notice is not ... and order.status not in FINAL_STATUSES:
        order.notice = notice
        session.add(order)
    if status is not None:
        moved = transition(session, order_id, status, error_code=error_code, error_message=error_message)
        if moved and status in ("failed", "cancelled") and refund_on_failure:
            refund_order(session, order_id)
    if status is None or moved:
        for image in images:
            add_image(session, order_id, image)
        for item in deliveries:
            add_delivery(session, order_id, item.kind, item.payload)
    return EventOutcome(applied=True, moved=moved, status=order.status)


# --- jobs, models, images ------------------------------------------------------------------------------------


def add_job(
    session: Session,
    order_id: str,
    kind: str,
    payload: dict[str, Any],
    *,
    job_id: str | None = None,
    attempt: int = 1,
) -> Job:
    if kind not in ORDER_KINDS:
        raise OrderStoreError(f"job kind must be one of {', '.join(ORDER_KINDS)}, got {kind!r}")
    job = Job(id=job_id or new_id(), order_id=order_id, kind=kind, attempt=attempt, payload=dict(payload))
    session.add(job)
    session.flush()
    return job


def note_job_resent(session: Session, order_id: str, job_id: str) -> bool:
    """The reconciler sent ``job_id`` again: count the attempt, a ``created`` order is now queued, and the order
    gets a fresh time budget. False (nothing changed) for a final or unknown order."""
    order = session.get(Order, order_id, populate_existing=True)
    job = session.get(Job, job_id, populate_existing=True)
    if order is None or job is None or job.order_id != order_id or order.status in FINAL_STATUSES:
        return False
    job.attempt += 1
    transition(session, order_id, "queued")  # only moves a created order
    order.updated_at = now()
    session.add_all([job, order])
    session.flush()
    return True


def jobs_of_order(session: Session, order_id: str) -> list[Job]:
    return list(session.exec(select(Job).where(Job.order_id == order_id).order_by(Job.created_at)))


def add_model(
    session: Session,
    *,
    user_id: object,
    name: str,
    class_word: str,
    subject_token: str,
    base_model: str,
    order_id: str | None = None,
    model_id: str | None = None,
) -> TrainedModel:
    """A model in ``training``; mark_model_ready gives it its weights."""
    uid = _sid(user_id)
    get_or_create_user(session, uid)
    model = TrainedModel(
        id=model_id or new_id(),
        user_id=uid,
        order_id=order_id,
        name=name,
        class_word=class_word,
        subject_token=subject_token,
        base_model=base_model,
    )
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, model_id: str) -> TrainedModel | None:
    return session.get(TrainedModel, model_id)


def mark_model_ready(session: Session, model_id: str, lora_key: str) -> bool:
    model = session.get(TrainedModel, model_id)
    if model is None or model.status == "ready":
        return False
    model.status, model.lora_key = "ready", lora_key
    session.add(model)
    return True


def mark_model_failed(session: Session, model_id: str) -> bool:
    model = session.get(TrainedModel, model_id)
    if model is None or model.status != "training":
        return False
    model.status = "failed"
    session.add(model)
    return True


def models_of_user(session: Session, user_id: object, *, ready_only: bool = False) -> list[TrainedModel]:
    query = select(TrainedModel).where(TrainedModel.user_id == _sid(user_id))
    if ready_only:
        query = query.where(TrainedModel.status == "ready")
    return list(session.exec(query.order_by(TrainedModel.created_at.desc())))  # type: ignore[attr-defined]


def delete_model(session: Session, model_id: str) -> bool:
    """Forget a model row (its blobs are the caller's: storage.keys.model_prefix)."""
    model = session.get(TrainedModel, model_id)
    if model is None:
        return False
    session.delete(model)
    return True


def add_image(session: Session, order_id: str, image: NewImage) -> Image:
    order = _require(session, order_id)
    row = Image(
        order_id=order_id,
        user_id=order.user_id,
        job_id=image.job_id,
        index=image.index,
        blob_key=image.blob_key,
        seed=image.seed,
        prompt=image.prompt,
        likeness_verdict=image.likeness_verdict,
        likeness_score=image.likeness_score,
        likeness_tries=image.likeness_tries,
    )
    session.add(row)
    return row


def images_of_order(session: Session, order_id: str) -> list[Image]:
    return list(session.exec(select(Image).where(Image.order_id == order_id).order_by(Image.index)))


# --- the delivery outbox -----------------------------------------------------------------------------------


def add_delivery(session: Session, order_id: str | None, kind: str, payload: dict[str, Any]) -> Delivery:
    """A post to make, committed with the change that causes it; the bot's delivery loop sends it."""
    row = Delivery(order_id=order_id, kind=kind, payload=dict(payload))
    session.add(row)
    session.flush()
    return row


def pending_deliveries(session: Session, limit: int = 50) -> list[Delivery]:
    query = select(Delivery).where(Delivery.status == "pending").order_by(Delivery.created_at).limit(limit)
    return list(session.exec(query))


def mark_sent(session: Session, delivery_id: str, discord_message_id: object) -> bool:
    """Record the Discord message that carried the delivery; False if it was already sent (no double post)."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "pending")
        .values(status="sent", discord_message_id=_sid(discord_message_id), sent_at=now(), updated_at=now())
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def record_delivery_failure(session: Session, delivery_id: str, error: str) -> int:
    """Count a failed attempt (the row stays pending for a retry); returns the attempts so far."""
    row = session.get(Delivery, delivery_id)
    if row is None:
        return 0
    row.attempts += 1
    row.last_error = error[:500]
    row.updated_at = now()
    session.add(row)
    return row.attempts


def give_up_delivery(session: Session, delivery_id: str, error: str, max_attempts: int) -> bool:
    """Record why an attempt failed (attempts are counted when a post starts); once ``max_attempts`` were
    made, the row is marked failed and never tried again. True when it was given up now."""
    row = session.get(Delivery, delivery_id, populate_existing=True)
    if row is None or row.status != "pending":
        return False
    row.last_error = error[:500]
    row.updated_at = now()
    if row.attempts >= max_attempts:
        row.status = "failed"
    session.add(row)
    session.flush()
    return row.status == "failed"


# --- queries the bot needs ---------------------------------------------------------------------------------


def orders_of_user(
    session: Session, user_id: object, *, limit: int = 25, active_only: bool = False
) -> list[Order]:
    """The member's orders, newest first."""
    query = select(Order).where(Order.user_id == _sid(user_id))
    if active_only:
        query = query.where(Order.status.in_(ACTIVE_STATUSES))  # type: ignore[attr-defined]
    return list(session.exec(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)))  # type: ignore[attr-defined]


def quiet_active_orders(session: Session, before: float, *, limit: int = 200) -> list[tuple[Order, Job]]:
    """Active orders unchanged since ``before`` (no event, no progress), oldest first, each with its first
    job: the candidates of the bot's reconciler."""
    query = (
        select(Order, Job)
        .join(Job, Job.order_id == Order.id)  # type: ignore[arg-type]
        .where(Order.status.in_(ACTIVE_STATUSES), Order.updated_at < before)  # type: ignore[attr-defined]
        .order_by(Order.updated_at, Job.created_at)
        .limit(limit)
    )
    first: dict[str, tuple[Order, Job]] = {}
    for order, job in session.exec(query):
        first.setdefault(order.id, (order, job))
    return list(first.values())


def active_order_count(session: Session, user_id: object) -> int:
    query = (
        select(func.count())
        .select_from(Order)
        .where(
            Order.user_id == _sid(user_id),
            Order.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
        )
    )
    return int(session.exec(query).one())


def order_count_since(session: Session, user_id: object, since: float) -> int:
    """Orders the member placed since ``since`` (Unix seconds): the daily quota's count."""
    query = (
        select(func.count())
        .select_from(Order)
        .where(Order.user_id == _sid(user_id), Order.created_at >= since)
    )
    return int(session.exec(query).one())


def queue_position(session: Session, order_id: str) -> int | None:
    """1 for the next order of its kind to start, 2 behind that …; 0 while it runs; None once final."""
    order = _require(session, order_id)
    if order.status in FINAL_STATUSES:
        return None
    if order.status not in ("created", "queued"):
        return 0
    ahead = (
        select(func.count())
        .select_from(Order)
        .where(
            Order.kind == order.kind,
            Order.status.in_(("created", "queued")),  # type: ignore[attr-defined]
            or_(
                Order.created_at < order.created_at,
                (Order.created_at == order.created_at) & (Order.id < order.id),  # type: ignore[operator]
            ),
        )
    )
    return int(session.exec(ahead).one()) + 1


def waiting_count(session: Session, kind: str) -> int:
    """Orders of ``kind`` not started yet."""
    query = (
        select(func.count())
        .select_from(Order)
        .where(
            Order.kind == kind,
            Order.status.in_(("created", "queued")),  # type: ignore[attr-defined]
        )
    )
    return int(session.exec(query).one())


@dataclass(frozen=True)
class DeletionReceipt:
    orders: int
    jobs: int
    images: int
    models: int
    deliveries: int
    events: int
    user: int  # 1 if the member's row was deleted, 0 if absent

    @property
    def total(self) -> int:
        return self.orders + self.jobs + self.images + self.models + self.deliveries + self.events + self.user


def delete_user_data(session: Session, user_id: object) -> DeletionReceipt:
    """Delete every row of a member (orders, jobs, images, models, outbox, applied events, the member).

    The member's standing in each server (storage.standing: credits, ban, quota use) stays, so forgetting oneself
    is no way around a ban or to fresh credits. The audit log stays: it records moderators' actions. The blobs
    are the caller's: storage.keys.user_prefix.
    """
    uid = _sid(user_id)
    order_ids = select(Order.id).where(Order.user_id == uid)

    def _count(result: Any) -> int:
        return int(result.rowcount or 0)

    events = _count(session.execute(delete(AppliedEvent).where(AppliedEvent.order_id.in_(order_ids))))  # type: ignore[union-attr]
    deliveries = _count(session.execute(delete(Delivery).where(Delivery.order_id.in_(order_ids))))  # type: ignore[union-attr]
    images = _count(session.execute(delete(Image).where(Image.user_id == uid)))
    jobs = _count(session.execute(delete(Job).where(Job.order_id.in_(order_ids))))  # type: ignore[attr-defined]
    orders = _count(session.execute(delete(Order).where(Order.user_id == uid)))
    models = _count(session.execute(delete(TrainedModel).where(TrainedModel.user_id == uid)))
    user = session.get(User, uid, populate_existing=True)
    removed_user = 0
    if user is not None:
        session.delete(user)
        removed_user = 1
    standing.prune_order_times(session, uid)
    session.flush()
    session.expire_all()
    return DeletionReceipt(orders, jobs, images, models, deliveries, events, removed_user)


# --- audit log -----------------------------------------------------------------------------------------------


def audit(
    session: Session,
    *,
    action: str,
    guild_id: object | None = None,
    actor_id: object | None = None,
    target: object | None = None,
    detail: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        guild_id=None if guild_id is None else _sid(guild_id),
        actor_id=None if actor_id is None else _sid(actor_id),
        action=action,
        target=None if target is None else _sid(target),
        detail=detail,
    )
    session.add(entry)
    return entry


def audit_entries(session: Session, guild_id: object, *, limit: int = 50) -> list[AuditEntry]:
    query = (
        select(AuditEntry)
        .where(AuditEntry.guild_id == _sid(guild_id))
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())  # type: ignore[union-attr]
        .limit(limit)
    )
    return list(session.exec(query))
