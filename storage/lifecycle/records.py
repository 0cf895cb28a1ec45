"""The plain records the life cycle takes and returns (never ORM objects: those stay inside one session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.contracts import JobKind, OrderStatus
from storage.models import Order, TrainedModel
from storage.order_store import OrderStoreError


@dataclass(frozen=True)
class OrderView:
    id: str
    user_id: str
    guild_id: str | None
    channel_id: str | None
    kind: JobKind
    status: OrderStatus
    model_id: str | None
    params: dict[str, Any]
    status_message_id: str | None
    credits_charged: int
    step: int | None
    total: int | None
    eta_s: float | None
    preview_key: str | None
    notice: str | None
    error_message: str | None
    created_ts: float

    @classmethod
    def of(cls, o: Order) -> OrderView:
        return cls(
            id=o.id,
            user_id=o.user_id,
            guild_id=o.guild_id,
            channel_id=o.channel_id,
            kind=JobKind(o.kind),
            status=OrderStatus(o.status),
            model_id=o.model_id,
            params=dict(o.params or {}),
            status_message_id=o.status_message_id,
            credits_charged=o.credits_charged,
            step=o.progress_step,
            total=o.progress_total,
            eta_s=o.progress_eta_s,
            preview_key=o.preview_key,
            notice=o.notice,
            error_message=o.error_message,
            created_ts=o.created_at,
        )


@dataclass(frozen=True)
class ModelView:
    id: str
    user_id: str
    name: str
    class_word: str
    subject_token: str
    base_model: str
    lora_key: str | None
    status: str
    created_ts: float

    @classmethod
    def of(cls, m: TrainedModel) -> ModelView:
        return cls(
            m.id,
            m.user_id,
            m.name,
            m.class_word,
            m.subject_token,
            m.base_model,
            m.lora_key,
            m.status,
            m.created_at,
        )


@dataclass(frozen=True)
class OutboxItem:
    id: str
    order_id: str | None
    kind: str  # render_result | train_result | failed | likeness_advice | delivery_failed
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class Limits:
    """A member's limits in one server (the server's rules over the bot's settings)."""

    max_concurrent: int
    daily_quota: int
    starting_credits: int


@dataclass(frozen=True)
class NewModel:
    """The model a train order makes (written in ``training`` with the order)."""

    id: str
    name: str
    class_word: str
    subject_token: str
    base_model: str
    lora_key: str


@dataclass(frozen=True)
class Applied:
    """What applying one agent event did."""

    duplicate: bool  # seen before: nothing changed
    order_id: str | None  # the order whose status message needs an edit (None: unknown order or foreign job)
    final: bool  # the order reached a final state: edit now, not throttled
    outbox: bool  # a post was queued in the outbox
    forged: str | None = None  # why the event was dropped as not its order's (None: it was its order's)


@dataclass(frozen=True)
class GaveUp:
    """An outbox row given up after DELIVERY_MAX_ATTEMPTS: what the admins' alert names."""

    outbox_id: str
    order_id: str | None
    kind: str
    guild_id: str | None
    attempts: int
    error: str


class LimitReached(OrderStoreError):
    """A new order over one of the member's limits; the message is safe to show them. ``banned``: they are
    banned in that server (or everywhere), not merely over a limit."""

    def __init__(self, message: str, *, banned: bool = False) -> None:
        super().__init__(message)
        self.message, self.banned = message, banned
