"""A server's monthly GPU budget, as the order store knows it: what its orders used this month (JobUsage rows),
what its open orders are expected to use, measured GPU time per kind of job, and the alerts already posted.

Estimates (``estimate_seconds``): a job's *units* of work are 1 for a training; for a render, pictures × people
pictured × (pixels / 512²) × (steps / 30), so a grid of four 1024² pictures at 30 steps is 16 units. The GPU
seconds per unit are the median over the newest ``SAMPLE_ROWS`` finished jobs (done, with GPU time recorded) of
the same kind and mode (train; txt2img, variation, upscale, group); with fewer than ``MIN_SAMPLES`` of them the
documented default ``DEFAULT_SECONDS_PER_UNIT`` is used (docs/ADMIN_GUIDE.md). Money is the caller's business
(bot/services/budget.py prices the seconds).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from storage import order_store
from storage.models import ACTIVE_STATUSES, GuildSettings, Job, JobUsage, Order

#: The outbox kind of a budget alert (posted to the server's admin log channel by the bot's delivery loop).
ALERT_KIND = "budget_alert"
ALERT_PERCENTS = (50, 80, 100)

REFERENCE_PIXELS = 512 * 512
REFERENCE_STEPS = 30
#: GPU seconds per unit before anything of that kind was measured: a training of the photoreal recipe on an A10G,
#: one 512² picture at 30 steps (a mid-range GPU, SD 1.5 family).
DEFAULT_SECONDS_PER_UNIT = {"train": 900.0, "render": 4.0}
MIN_SAMPLES = 3
SAMPLE_ROWS = 50


@dataclass(frozen=True)
class JobShape:
    """What a job's GPU time depends on."""

    kind: str  # train | render
    mode: str = "train"  # train; txt2img | variation | upscale | group
    count: int = 1
    width: int = 512
    height: int = 512
    steps: int = REFERENCE_STEPS
    people: int = 1

    @property
    def units(self) -> float:
        if self.kind == "train":
            return 1.0
        pixels = max(1, self.width) * max(1, self.height) / REFERENCE_PIXELS
        return max(1, self.count) * max(1, self.people) * pixels * max(1, self.steps) / REFERENCE_STEPS


def shape_of(kind: str, params: Mapping[str, Any], steps: int) -> JobShape:
    """The shape of an order from its params (``steps``: the render steps its job ran or will run with)."""
    if kind == "train":
        return JobShape("train")
    group = params.get("group") or {}
    return JobShape(
        "render",
        mode=str(params.get("mode") or "txt2img"),
        count=int(params.get("count") or 1),
        width=int(params.get("width") or 512),
        height=int(params.get("height") or 512),
        steps=int(steps),
        people=int(group.get("people") or 1),
    )


@dataclass(frozen=True)
class Measured:
    seconds: float  # the estimate for the shape asked about
    samples: int  # finished jobs it was measured on (0: the default)
    instance_seen: bool  # a job of this kind ran before: instance_type is the pool that ran the newest
    instance_type: str | None  # None with instance_seen: a self-hosted agent


def estimate_seconds(session: Session, shape: JobShape, render_steps: int) -> Measured:
    """GPU seconds ``shape`` is expected to take, measured on recent finished jobs of its kind and mode."""
    query = (
        select(JobUsage, Order.kind, Order.params, Job.payload)
        .join(Order, Order.id == JobUsage.order_id)  # type: ignore[arg-type]
        .outerjoin(Job, Job.id == JobUsage.job_id)  # type: ignore[arg-type]
        .where(JobUsage.job_kind == shape.kind, JobUsage.outcome == "done", JobUsage.gpu_seconds > 0)
        .order_by(JobUsage.at.desc())  # type: ignore[attr-defined]
        .limit(SAMPLE_ROWS * 4)
    )
    rows = list(session.exec(query))
    per_unit: list[float] = []
    for usage, kind, params, payload in rows:
        steps = int((payload or {}).get("steps") or render_steps)
        sample = shape_of(kind, dict(params or {}), steps)
        if sample.mode == shape.mode and len(per_unit) < SAMPLE_ROWS:
            per_unit.append(usage.gpu_seconds / sample.units)
    if len(per_unit) >= MIN_SAMPLES:
        unit_s = statistics.median(per_unit)
    else:
        unit_s, per_unit = DEFAULT_SECONDS_PER_UNIT[shape.kind], []
    newest = rows[0][0].instance_type if rows else None
    return Measured(unit_s * shape.units, len(per_unit), bool(rows), newest)


# --- the month ----------------------------------------------------------------------------------------------


def month_start(at: float) -> float:
    """Midnight UTC of the first day of the month ``at`` falls in."""
    day = datetime.fromtimestamp(at, UTC)
    return datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()


def month_key(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m")


def month_name(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%B")


@dataclass(frozen=True)
class Used:
    usd: float
    gpu_seconds: float


def used_since(session: Session, guild_id: object, since: float) -> Used:
    """GPU time and dollars recorded since ``since`` for the orders of one server."""
    usd, seconds = session.exec(
        select(func.sum(JobUsage.cost_usd), func.sum(JobUsage.gpu_seconds))
        .join(Order, Order.id == JobUsage.order_id)  # type: ignore[arg-type]
        .where(Order.guild_id == str(guild_id), JobUsage.at >= since)
    ).one()
    return Used(float(usd or 0.0), float(seconds or 0.0))


def open_orders(session: Session, guild_id: object) -> list[tuple[str, dict[str, Any]]]:
    """(kind, params) of the server's orders not finished yet: queued, running, or waiting for consent."""
    query = select(Order.kind, Order.params).where(
        Order.guild_id == str(guild_id),
        Order.status.in_(ACTIVE_STATUSES),  # type: ignore[attr-defined]
    )
    return [(kind, dict(params or {})) for kind, params in session.exec(query)]


def claim_alert(session: Session, guild_id: object, at: float, percent: int) -> bool:
    """Note that the ``percent`` alert of ``at``'s month is being posted; False when it (or a higher one) was.
    Call it inside a write transaction, with the outbox row it records."""
    row = order_store.get_guild_settings(session, guild_id)
    month = month_key(at)
    if row.budget_alert_month == month and row.budget_alert_percent >= percent:
        return False
    order_store.update_guild_settings(
        session, guild_id, budget_alert_month=month, budget_alert_percent=percent
    )
    return True


@dataclass(frozen=True)
class ServerMonth:
    """One server's month as the operators' dashboard shows it."""

    guild_id: str
    limit: float | None
    unit: str
    usd: float
    gpu_seconds: float

    @property
    def spent(self) -> float:
        """In the budget's unit."""
        return self.gpu_seconds / 3600 if self.unit == "gpu_hours" else self.usd


def servers_this_month(session: Session, at: float) -> list[ServerMonth]:
    """Every server with a budget or with use since the first of ``at``'s month."""
    since = month_start(at)
    used = {
        str(gid): (float(usd or 0.0), float(seconds or 0.0))
        for gid, usd, seconds in session.exec(
            select(Order.guild_id, func.sum(JobUsage.cost_usd), func.sum(JobUsage.gpu_seconds))
            .join(Order, Order.id == JobUsage.order_id)  # type: ignore[arg-type]
            .where(JobUsage.at >= since, Order.guild_id.is_not(None))  # type: ignore[union-attr]
            .group_by(Order.guild_id)
        )
    }
    budgets = {
        g.guild_id: g
        for g in session.exec(
            select(GuildSettings).where(GuildSettings.budget_limit.is_not(None))  # type: ignore[union-attr]
        )
    }
    rows = []
    for gid in sorted(set(used) | set(budgets)):
        g = budgets.get(gid)
        usd, seconds = used.get(gid, (0.0, 0.0))
        rows.append(
            ServerMonth(gid, g.budget_limit if g else None, g.budget_unit if g else "usd", usd, seconds)
        )
    # Budgeted servers first, the nearest to (or furthest past) their budget at the top.
    return sorted(
        rows, key=lambda r: (r.limit is None, -(r.spent / r.limit if r.limit else 0.0), -r.usd, r.guild_id)
    )
