"""Webhooks of API tenants (docs/API.md): endpoints, and one delivery row per (order event, endpoint).

A delivery row is written in the transaction that changes the order (``record_order_event``, called by
storage.lifecycle), so an event applied is an event announced, exactly once; the api process posts the rows
(bot/api/webhooks.py) and logs every attempt on the row, which the tenant reads back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from storage.api_store import tenant_of_guild
from storage.contracts import OrderStatus
from storage.db import read_session, transaction
from storage.models import Order, WebhookDelivery, WebhookEndpoint, now

#: The events a tenant can subscribe to: an order's status changes (progress steps are polled, not pushed).
EVENTS = ("order.queued", "order.started", "order.done", "order.failed", "order.cancelled")
_S = OrderStatus
_EVENT_OF = {
    _S.QUEUED: "order.queued",
    _S.TRAINING: "order.started",
    _S.RENDERING: "order.started",
    _S.DELIVERED: "order.done",
    _S.FAILED: "order.failed",
    _S.CANCELLED: "order.cancelled",
}
MAX_ENDPOINTS = 10


@dataclass(frozen=True)
class EndpointView:
    id: str
    url: str
    events: tuple[str, ...]
    created_at: float


@dataclass(frozen=True)
class DeliveryView:
    id: str
    endpoint_id: str
    order_id: str | None
    event: str
    status: str
    attempts: int
    attempt_log: list[dict[str, Any]]
    created_at: float
    delivered_at: float | None


@dataclass(frozen=True)
class DueDelivery:
    id: str
    url: str
    secret: str
    payload: dict[str, Any]
    attempts: int
    created_at: float


def _endpoint_view(e: WebhookEndpoint) -> EndpointView:
    return EndpointView(e.id, e.url, tuple(e.events), e.created_at)


def _delivery_view(d: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        d.id,
        d.endpoint_id,
        d.order_id,
        d.event,
        d.status,
        d.attempts,
        list(d.attempt_log),
        d.created_at,
        d.delivered_at,
    )


def add_endpoint(engine: Engine, tenant_id: str, url: str, events: list[str]) -> tuple[EndpointView, str]:
    """A new endpoint and its signing secret (shown once). ValueError past MAX_ENDPOINTS."""
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    with transaction(engine) as s:
        count = len(s.exec(select(WebhookEndpoint.id).where(WebhookEndpoint.tenant_id == tenant_id)).all())
        if count >= MAX_ENDPOINTS:
            raise ValueError(f"at most {MAX_ENDPOINTS} webhook endpoints per tenant")
        row = WebhookEndpoint(tenant_id=tenant_id, url=url, secret=secret, events=sorted(set(events)))
        s.add(row)
        s.flush()
        return _endpoint_view(row), secret


def list_endpoints(engine: Engine, tenant_id: str) -> list[EndpointView]:
    with read_session(engine) as s:
        query = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)
        return [_endpoint_view(e) for e in s.exec(query.order_by(col(WebhookEndpoint.created_at))).all()]


def delete_endpoint(engine: Engine, tenant_id: str, endpoint_id: str) -> bool:
    with transaction(engine) as s:
        row = s.get(WebhookEndpoint, endpoint_id)
        if row is None or row.tenant_id != tenant_id:
            return False
        s.delete(row)
        return True


def order_payload(order: Order, event: str, at: float) -> dict[str, Any]:
    """What a tenant is told: the order's id and new state, never a path or another tenant's data."""
    error = {"code": order.error_code, "message": order.error_message} if order.error_code else None
    return {
        "type": event,
        "created": at,
        "data": {
            "order_id": order.id,
            "kind": order.kind,
            "status": order.status,
            "model_id": order.model_id,
            "subject_id": order.user_id,
            "error": error,
        },
    }


def record_order_event(session: Session, order_id: str) -> int:
    """Inside the transaction that moved the order: one pending delivery per subscribed endpoint of the
    order's tenant (none for a Discord order); returns how many."""
    order = session.get(Order, order_id)
    tenant_id = None if order is None else tenant_of_guild(order.guild_id)
    event = None if order is None else _EVENT_OF.get(OrderStatus(order.status))
    if order is None or tenant_id is None or event is None:
        return 0
    endpoints = session.exec(select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id)).all()
    at = now()
    made = 0
    for endpoint in endpoints:
        if event not in endpoint.events:
            continue
        row = WebhookDelivery(
            tenant_id=tenant_id, endpoint_id=endpoint.id, order_id=order.id, event=event, next_attempt_at=at
        )
        row.payload = {"id": row.id, **order_payload(order, event, at)}
        session.add(row)
        made += 1
    session.flush()
    return made


def due_deliveries(engine: Engine, limit: int = 20, at: float | None = None) -> list[DueDelivery]:
    at = now() if at is None else at
    with read_session(engine) as s:
        query = (
            select(WebhookDelivery, WebhookEndpoint)
            .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
            .where(WebhookDelivery.status == "pending", col(WebhookDelivery.next_attempt_at) <= at)
            .order_by(col(WebhookDelivery.next_attempt_at))
            .limit(limit)
        )
        return [
            DueDelivery(d.id, e.url, e.secret, dict(d.payload), d.attempts, d.created_at)
            for d, e in s.exec(query).all()
        ]


def record_attempt(
    engine: Engine,
    delivery_id: str,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    max_attempts: int,
    backoff_s: float,
) -> str:
    """Log one try on the row; a failed try is retried after ``backoff_s`` × 2^(tries-1) until
    ``max_attempts``, then the row is ``failed``. Returns the row's status."""
    at = now()
    with transaction(engine) as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is None:  # the endpoint was removed meanwhile
            return "gone"
        row.attempts += 1
        row.attempt_log = [
            *row.attempt_log,
            {
                "at": at,
                "ok": ok,
                "status_code": status_code,
                "error": error,
                "duration_ms": round(duration_ms, 1),
            },
        ]
        if ok:
            row.status, row.delivered_at = "delivered", at
        elif row.attempts >= max_attempts:
            row.status = "failed"
        else:
            row.next_attempt_at = at + backoff_s * 2 ** (row.attempts - 1)
        s.add(row)
        return row.status


def list_deliveries(
    engine: Engine, tenant_id: str, *, order_id: str | None = None, limit: int = 50
) -> list[DeliveryView]:
    with read_session(engine) as s:
        query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
        if order_id is not None:
            query = query.where(WebhookDelivery.order_id == order_id)
        query = query.order_by(col(WebhookDelivery.created_at).desc()).limit(limit)
        return [_delivery_view(d) for d in s.exec(query).all()]
