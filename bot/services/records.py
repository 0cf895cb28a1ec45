"""Plain records the services hand to the cogs (never ORM objects: those stay inside one session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OrderView:
    id: str
    user_id: str
    guild_id: str | None
    channel_id: str | None
    kind: str  # train | render
    status: str
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


@dataclass(frozen=True)
class Placed:
    order_id: str
    job_id: str
    queue_position: int
    eta_s: float | None
    credits_left: int


@dataclass(frozen=True)
class CancelResult:
    refunded: int


@dataclass(frozen=True)
class QueuePosition:
    order_id: str
    status: str
    position: int
    eta_s: float | None


@dataclass
class QueueOverview:
    train_waiting: int
    render_waiting: int
    agents_online: int
    mine: list[QueuePosition] = field(default_factory=list)


@dataclass(frozen=True)
class OutboxItem:
    id: str
    order_id: str | None
    kind: str  # render_result | train_result | failed | likeness_advice
    payload: dict[str, Any]
    attempts: int
