"""The order store's tables (SQLModel). Times are Unix seconds (float, UTC); Discord ids are strings.

Changing a table means adding an Alembic revision under storage/migrations/versions/ — a test checks that the
migrated schema equals this metadata.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from storage.contracts import JobKind, OrderStatus

ORDER_KINDS: tuple[JobKind, ...] = tuple(JobKind)
# The happy path, in order; an order only ever moves to a later one, or to failed/cancelled.
_S = OrderStatus
ORDER_FLOW = (_S.CREATED, _S.QUEUED, _S.TRAINING, _S.TRAINED, _S.RENDERING, _S.DELIVERED)
FINAL_STATUSES = (_S.DELIVERED, _S.FAILED, _S.CANCELLED)
ORDER_STATUSES: tuple[OrderStatus, ...] = tuple(OrderStatus)
ACTIVE_STATUSES = (_S.CREATED, _S.QUEUED, _S.TRAINING, _S.TRAINED, _S.RENDERING)
MODEL_STATUSES = ("training", "ready", "failed")
DELIVERY_STATUSES = ("pending", "sent", "failed")  # failed: given up after DELIVERY_MAX_ATTEMPTS
NSFW_POLICIES = ("block", "age_restricted_only")
BUDGET_UNITS = ("usd", "gpu_hours")


def now() -> float:
    return time.time()


def new_id() -> str:
    return uuid.uuid4().hex


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=32, description="Discord user id")
    consent_at: float | None = Field(default=None, description="When the member accepted the photo terms")
    created_at: float = Field(default_factory=now)
    # Credits, bans and quotas are per server: MemberStanding.


class MemberStanding(SQLModel, table=True):
    """A member's standing in one server: credits, ban, quota. Kept when the member is forgotten (/forget-me) so
    forgetting never re-grants credits or quota; it holds no personal data (docs/PRIVACY.md).

    ``guild_id`` ``"*"`` is a bot owner's ban everywhere; ``""`` is an order placed outside any server.
    """

    __tablename__ = "member_standing"

    guild_id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(primary_key=True, max_length=32)
    # The balance is no column: it is the sum of the member's CreditEntry rows here (storage/credits.py).
    starting_credits_granted: bool = False  # the starting credits are granted once ever per (server, member)
    banned: bool = False
    ban_reason: str | None = None
    daily_quota: int | None = Field(default=None, description="Admin override of the daily order quota")
    order_times: list[float] = _json(list)  # when the orders of the last day were placed: the quota's count
    updated_at: float = Field(default_factory=now)


CREDIT_KINDS = ("starting", "grant", "opening", "charge", "refund", "expiry")
GRANT_KINDS = ("starting", "grant", "opening")  # what expiry can take back (the oldest first)


class CreditEntry(SQLModel, table=True):
    """One movement of a member's credits in one server, appended and never changed: the balance is the sum of
    the member's entries there. storage/credits.py is the only writer. Kept through /forget-me like
    MemberStanding; ``reason`` holds the system's or an admin's words, never a member's.

    ``amount`` is signed: + starting, grant, opening (the balance carried over when the ledger began), refund;
    − charge, expiry. ``actor``: the member's or admin's Discord id, or ``"system"``.
    """

    __tablename__ = "credit_entries"
    __table_args__ = (Index("ix_credit_entries_member", "guild_id", "user_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    guild_id: str = Field(max_length=32)
    user_id: str = Field(max_length=32)
    kind: str = Field(max_length=16)  # CREDIT_KINDS
    amount: int
    order_id: str | None = Field(default=None, max_length=64, index=True)
    reason: str | None = Field(default=None, max_length=200)
    actor: str = Field(default="system", max_length=32)
    at: float = Field(default_factory=now)


class GuildSettings(SQLModel, table=True):
    __tablename__ = "guild_settings"

    guild_id: str = Field(primary_key=True, max_length=32)
    admin_role_id: str | None = None
    allowed_channel_ids: list[str] = _json(list)
    blocked_words: list[str] = _json(list)
    daily_quota: int | None = None
    max_concurrent_orders: int | None = None
    paused: bool = False
    admin_log_channel_id: str | None = None
    updated_at: float = Field(default_factory=now)
    nsfw_policy: str = Field(default="block", max_length=32)  # NSFW_POLICIES: what a flagged picture may do
    # The server's monthly GPU budget (storage/budget.py): in BUDGET_UNITS; None: no budget, no confirm step.
    budget_limit: float | None = None
    budget_unit: str = Field(default="usd", max_length=16)
    budget_confirm_above: float | None = None  # an estimate above this (same unit) asks the member first
    budget_alert_month: str | None = Field(default=None, max_length=7)  # "2026-11": the month alerted about
    budget_alert_percent: int = 0  # the highest of 50/80/100 % alerted in budget_alert_month


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_status_created", "status", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="users.id", max_length=32)
    guild_id: str | None = None
    channel_id: str | None = None
    kind: str = Field(max_length=16)  # train | render
    status: str = Field(default="created", max_length=16)
    model_id: str | None = Field(default=None, max_length=64)
    prompt: str | None = None
    params: dict[str, Any] = _json(dict)
    status_message_id: str | None = None
    # The order's own ledger entries summed (charge, refunds), written with them by storage/credits.py only.
    credits_charged: int = 0
    credits_refunded: int = 0  # refund_order pays back the difference, so a refund happens once
    progress_step: int | None = None
    progress_total: int | None = None
    progress_eta_s: float | None = None
    preview_key: str | None = None
    notice: str | None = (
        None  # passing news on the status message (a reclaimed GPU); cleared when work goes on
    )
    error_code: str | None = None
    error_message: str | None = None
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=64)
    kind: str = Field(max_length=16)  # train | render
    attempt: int = 1
    payload: dict[str, Any] = _json(dict)
    created_at: float = Field(default_factory=now)


class TrainedModel(SQLModel, table=True):
    __tablename__ = "trained_models"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32)
    order_id: str | None = Field(default=None, max_length=64)
    name: str
    class_word: str
    subject_token: str
    base_model: str
    lora_key: str | None = None
    status: str = Field(default="training", max_length=16)
    created_at: float = Field(default_factory=now)


class Image(SQLModel, table=True):
    __tablename__ = "images"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    order_id: str = Field(foreign_key="orders.id", index=True, max_length=64)
    user_id: str = Field(index=True, max_length=32)
    job_id: str | None = Field(default=None, max_length=64)
    index: int = 0
    blob_key: str
    seed: int | None = None
    prompt: str | None = None
    created_at: float = Field(default_factory=now)
    # How much the picture looks like its member (gpu_agent.photos.likeness); None: not scored.
    likeness_verdict: str | None = Field(default=None, max_length=16)
    likeness_score: float | None = None
    likeness_tries: int | None = None


class AppliedEvent(SQLModel, table=True):
    """One row per event id ever applied: the idempotency record."""

    __tablename__ = "applied_events"

    event_id: str = Field(primary_key=True, max_length=64)
    order_id: str | None = Field(default=None, index=True, max_length=64)
    applied_at: float = Field(default_factory=now)


class Delivery(SQLModel, table=True):
    """The outbox: a post to Discord written in the same transaction as the state change that causes it."""

    __tablename__ = "delivery_outbox"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    order_id: str | None = Field(default=None, foreign_key="orders.id", index=True, max_length=64)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = _json(dict)
    status: str = Field(default="pending", index=True, max_length=16)
    discord_message_id: str | None = None
    attempts: int = 0
    last_error: str | None = None
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    sent_at: float | None = None


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    guild_id: str | None = Field(default=None, index=True, max_length=32)
    actor_id: str | None = Field(default=None, max_length=32)
    action: str = Field(max_length=64)
    target: str | None = None
    detail: str | None = None
    created_at: float = Field(default_factory=now, index=True)


class MetricSample(SQLModel, table=True):
    """One sampled figure (queue depth, fleet size …) at one time: the dashboard's charts over time.

    ``labels`` is a canonical string such as ``queue=train`` (sorted ``k=v`` pairs joined by ``,``) so a series is
    one (name, labels) pair and can be grouped on without parsing JSON.
    """

    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_name_at", "name", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(default_factory=now, index=True)
    name: str = Field(max_length=64)
    labels: str = Field(default="", max_length=200)
    value: float


class JobUsage(SQLModel, table=True):
    """What one finished job (a done or failed event) used: GPU seconds and their estimated price.

    One row per event id, so a redelivered event is counted once; cost per order is the sum over its rows.
    """

    __tablename__ = "job_usage"
    __table_args__ = (Index("ix_job_usage_order", "order_id"), Index("ix_job_usage_at", "at"))

    event_id: str = Field(primary_key=True, max_length=64)
    order_id: str = Field(max_length=64)
    job_id: str = Field(max_length=64)
    job_kind: str = Field(max_length=16)  # train | render
    outcome: str = Field(max_length=16)  # done | failed
    error_code: str | None = Field(default=None, max_length=64)
    agent_id: str = Field(default="", max_length=128)
    instance_type: str | None = Field(default=None, max_length=64)
    gpu_seconds: float = 0.0
    price_per_hour: float = 0.0  # the price used, kept so a later price change does not rewrite history
    cost_usd: float = 0.0
    at: float = Field(default_factory=now)


class BlockedPicture(SQLModel, table=True):
    """A picture the safety check kept out of Discord (storage/safety_log.py). Only what an audit needs:
    the order, the score, why and when; the picture itself is deleted. ``id`` is derived from the picture's
    blob key, so retrying a post records it once."""

    __tablename__ = "blocked_pictures"

    id: str = Field(primary_key=True, max_length=64)
    order_id: str = Field(index=True, max_length=64)
    guild_id: str | None = Field(default=None, index=True, max_length=32)
    score: float = 0.0
    reason: str = Field(max_length=32)  # flagged | withheld | unchecked
    at: float = Field(default_factory=now)


CONSENT_STATUSES = ("asked", "accepted", "refused", "revoked", "expired")


class GroupConsent(SQLModel, table=True):
    """One member's consent to one group picture (storage/consent.py): nobody is rendered without an
    ``accepted`` row of that order. The caller's own row is ``accepted`` when they place the order; a re-roll
    or variation carries the parent's consent forward (``carried_from``)."""

    __tablename__ = "group_consent"

    order_id: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(primary_key=True, index=True, max_length=32)
    guild_id: str | None = Field(default=None, max_length=32)
    position: int = 0  # left to right in the picture
    model_id: str = Field(max_length=64)
    status: str = Field(default="asked", max_length=16)  # CONSENT_STATUSES
    asked_at: float = Field(default_factory=now)
    answered_at: float | None = None
    expires_at: float = 0.0
    request_message_id: str | None = None  # the Accept/Refuse message in the channel
    carried_from: str | None = Field(default=None, max_length=64)


class GroupPreference(SQLModel, table=True):
    """A member who turned off group requests in one server (/group requests off)."""

    __tablename__ = "group_preferences"

    guild_id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(primary_key=True, max_length=32)
    no_requests: bool = False
    updated_at: float = Field(default_factory=now)


# --- the HTTP API (bot/api, docs/API.md): tenants, their keys, subjects, idempotency records, webhooks --------


class ApiTenant(SQLModel, table=True):
    """A business using the HTTP API. Its orders are placed in the order store's "server" ``api-{id}``
    (storage/api_store.py), so standing and bans work as for a Discord server; nothing is charged in credits."""

    __tablename__ = "api_tenants"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: float = Field(default_factory=now)


class ApiKey(SQLModel, table=True):
    """One API key: only the SHA-256 of its secret is kept (the key is shown once)."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)  # public: the key's prefix
    tenant_id: str = Field(index=True, max_length=64)
    token_hash: str = Field(max_length=64)
    scopes: list[str] = _json(list)
    label: str | None = Field(default=None, max_length=200)
    created_at: float = Field(default_factory=now)
    revoked_at: float | None = None


class ApiSubject(SQLModel, table=True):
    """A person a tenant trains models of: a user of the order store, scoped to the tenant."""

    __tablename__ = "api_subjects"

    id: str = Field(primary_key=True, max_length=32)  # the order store's user id
    tenant_id: str = Field(index=True, max_length=64)
    created_at: float = Field(default_factory=now)


class ApiIdempotency(SQLModel, table=True):
    """An ``Idempotency-Key`` a tenant used: the request body's hash and the response it got."""

    __tablename__ = "api_idempotency"

    tenant_id: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=200)
    body_hash: str = Field(max_length=64)
    status_code: int = 200
    response: dict[str, Any] = _json(dict)
    created_at: float = Field(default_factory=now)


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "api_webhooks"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    tenant_id: str = Field(index=True, max_length=64)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=128)  # the signing secret, shown once at creation
    events: list[str] = _json(list)
    created_at: float = Field(default_factory=now)


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint, recorded in the transaction that applies the event; ``attempt_log`` holds
    every try (the tenant reads it through GET /v1/webhooks/deliveries)."""

    __tablename__ = "api_webhook_deliveries"
    __table_args__ = (Index("ix_api_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    tenant_id: str = Field(index=True, max_length=64)
    endpoint_id: str = Field(max_length=64)
    order_id: str | None = Field(default=None, max_length=64)
    event: str = Field(max_length=32)
    payload: dict[str, Any] = _json(dict)
    status: str = Field(default="pending", max_length=16)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: float = Field(default_factory=now)
    attempt_log: list[dict[str, Any]] = _json(list)
    created_at: float = Field(default_factory=now)
    delivered_at: float | None = None
