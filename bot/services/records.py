"""Plain records the services hand to the cogs (the order store's views are storage.lifecycle's: OrderView,
ModelView, OutboxItem)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
