"""Operational figures kept in the order store: sampled series (queue depth, fleet size over time), per-job usage
(GPU seconds and their price) and the queries behind the admin dashboard, the alerts and cost per order.

Like storage.order_store, every function takes an open Session and never commits. Times are Unix seconds (UTC).

What each figure means (so the dashboard, /admin queue and the alerts agree):

* a *finished job* is one done or failed event recorded with ``record_job_usage`` (one row per event id);
* *time to result* of an order is from its creation to its move to ``delivered`` (the order's ``updated_at``, which
  nothing changes after a final state except a refund, and a delivered order is never refunded);
* *failures* are orders that ended ``failed``, by their error code (what members saw), at the time they failed.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Integer, delete, func
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from storage.models import Delivery, Image, JobUsage, MetricSample, Order, TrainedModel, now

HOUR = 3600.0
JOB_OUTCOMES = ("done", "failed")


class MetricsError(ValueError):
    """A sample or usage record that cannot be stored (bad name, label, number)."""


def labels_key(labels: Mapping[str, object] | None) -> str:
    """The canonical label string of a series: ``pool=train,queue=x`` (sorted; '' for none)."""
    if not labels:
        return ""
    parts = []
    for key in sorted(labels):
        value = str(labels[key])
        if not key.isidentifier() or any(c in value for c in ",=\n"):
            raise MetricsError(
                f"label {key!r}={value!r}: names are identifiers, values have no ',', '=' or newline"
            )
        parts.append(f"{key}={value}")
    text = ",".join(parts)
    if len(text) > 200:
        raise MetricsError("labels longer than 200 characters")
    return text


def parse_labels(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",")) if text else {}


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise MetricsError(f"{what} must be a finite number, got {value!r}")
    return value


# --- sampled series --------------------------------------------------------------------------------------------


def record_samples(
    session: Session,
    samples: Iterable[tuple[str, Mapping[str, object] | None, float]],
    *,
    at: float | None = None,
) -> int:
    """Store ``(name, labels, value)`` samples taken at one time; all or nothing. Returns how many."""
    when = now() if at is None else _finite(at, "sample time")
    rows = []
    for name, labels, value in samples:
        if not name or len(name) > 64 or not name.replace("_", "a").isalnum():
            raise MetricsError(f"metric name {name!r}: letters, digits and '_' (at most 64)")
        rows.append(MetricSample(at=when, name=name, labels=labels_key(labels), value=_finite(value, name)))
    session.add_all(rows)
    session.flush()
    return len(rows)


def record_sample(
    session: Session,
    name: str,
    value: float,
    labels: Mapping[str, object] | None = None,
    *,
    at: float | None = None,
) -> None:
    record_samples(session, [(name, labels, value)], at=at)


def series(
    session: Session, name: str, since: float, until: float | None = None, *, max_points: int | None = None
) -> dict[str, list[tuple[float, float]]]:
    """Every series of ``name`` in [since, until]: labels string → [(time, value)] in time order.

    ``max_points``: thin each series in SQLite to at most that many points, keeping each time slice's highest
    value (a backlog's peaks are what matter) stamped at the slice's last sample.
    """
    where = [MetricSample.name == name, MetricSample.at >= since]
    if until is not None:
        where.append(MetricSample.at <= until)
    if max_points is None:
        query = select(MetricSample.at, MetricSample.labels, MetricSample.value).where(*where)
        query = query.order_by(MetricSample.at)  # type: ignore[arg-type]
    else:
        if max_points < 1:
            raise MetricsError("max_points must be >= 1")
        end = until if until is not None else now()
        # n - 1 slice widths span the window, so the newest sample (at ``until``) opens the last of n slices.
        width = max(end - since, 1e-9) / max(max_points - 1, 1)
        slice_no = func.min(func.cast((MetricSample.at - since) / width, Integer), max_points - 1)
        query = (
            select(func.max(MetricSample.at), MetricSample.labels, func.max(MetricSample.value))
            .where(*where)
            .group_by(MetricSample.labels, slice_no)
            .order_by(func.max(MetricSample.at))
        )
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for at, labels, value in session.exec(query):  # type: ignore[call-overload]
        out[labels].append((at, value))
    return dict(out)


def latest(session: Session, name: str, since: float | None = None) -> dict[str, tuple[float, float]]:
    """The newest sample of each series of ``name`` (sampled since ``since``): labels string → (time, value)."""
    # SQLite documents that a bare column next to max() takes its value from the row holding the maximum, so
    # one grouped pass over the (name, at) index finds each series' newest value.
    query = select(MetricSample.labels, func.max(MetricSample.at), MetricSample.value).where(
        MetricSample.name == name
    )
    if since is not None:
        query = query.where(MetricSample.at >= since)
    query = query.group_by(MetricSample.labels)
    return {labels: (at, value) for labels, at, value in session.exec(query)}  # type: ignore[call-overload]


def prune_samples(session: Session, before: float) -> int:
    """Delete samples older than ``before``; returns how many."""
    result = session.execute(delete(MetricSample).where(MetricSample.at < before))  # type: ignore[arg-type]
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- per-job usage ---------------------------------------------------------------------------------------------


def record_job_usage(
    session: Session,
    *,
    event_id: str,
    order_id: str,
    job_id: str,
    job_kind: str,
    outcome: str,
    gpu_seconds: float,
    price_per_hour: float,
    agent_id: str = "",
    instance_type: str | None = None,
    error_code: str | None = None,
    at: float | None = None,
) -> bool:
    """Record what one finished job used, once per ``event_id`` (False: seen before, nothing changed)."""
    if outcome not in JOB_OUTCOMES:
        raise MetricsError(f"job outcome must be one of {JOB_OUTCOMES}, got {outcome!r}")
    if job_kind not in ("train", "render"):
        raise MetricsError(f"job kind must be train or render, got {job_kind!r}")
    seconds = _finite(gpu_seconds, "gpu_seconds")
    price = _finite(price_per_hour, "price_per_hour")
    if seconds < 0 or price < 0:
        raise MetricsError("gpu_seconds and price_per_hour must be >= 0")
    result = session.execute(
        sqlite_insert(JobUsage)
        .values(
            event_id=event_id,
            order_id=order_id,
            job_id=job_id,
            job_kind=job_kind,
            outcome=outcome,
            error_code=error_code,
            agent_id=agent_id,
            instance_type=instance_type,
            gpu_seconds=seconds,
            price_per_hour=price,
            cost_usd=seconds * price / HOUR,
            at=now() if at is None else _finite(at, "time"),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OrderCost:
    order_id: str
    kind: str
    status: str
    created_at: float
    jobs: int
    gpu_seconds: float
    cost_usd: float


def order_cost(session: Session, order_id: str) -> OrderCost | None:
    rows = cost_per_order(session, order_ids=[order_id])
    return rows[0] if rows else None


def cost_per_order(
    session: Session, *, since: float | None = None, order_ids: Iterable[str] | None = None, limit: int = 1000
) -> list[OrderCost]:
    """GPU seconds and dollars of each order with recorded usage (orders created since ``since``), newest first."""
    query = (
        select(
            Order.id,
            Order.kind,
            Order.status,
            Order.created_at,
            func.count(JobUsage.event_id),
            func.sum(JobUsage.gpu_seconds),
            func.sum(JobUsage.cost_usd),
        )
        .join(JobUsage, JobUsage.order_id == Order.id)
        .group_by(Order.id)
        .order_by(Order.created_at.desc())  # type: ignore[attr-defined]
        .limit(limit)
    )
    if since is not None:
        query = query.where(Order.created_at >= since)
    if order_ids is not None:
        query = query.where(Order.id.in_(list(order_ids)))  # type: ignore[attr-defined]
    return [
        OrderCost(row[0], row[1], row[2], row[3], int(row[4]), float(row[5] or 0), float(row[6] or 0))
        for row in session.exec(query)
    ]


@dataclass(frozen=True)
class CostSummary:
    jobs: int
    gpu_seconds: float
    cost_usd: float
    orders: int
    mean_per_order: dict[str, float]  # order kind → mean dollars per order with usage


def cost_summary(session: Session, since: float, until: float | None = None) -> CostSummary:
    """Usage recorded in [since, until], and the mean cost of the orders it belongs to, by order kind."""
    where = [JobUsage.at >= since] + ([JobUsage.at <= until] if until is not None else [])
    jobs, seconds, dollars = session.exec(
        select(
            func.count(JobUsage.event_id), func.sum(JobUsage.gpu_seconds), func.sum(JobUsage.cost_usd)
        ).where(*where)
    ).one()
    per_order = session.exec(
        select(Order.kind, JobUsage.order_id, func.sum(JobUsage.cost_usd))
        .join(Order, Order.id == JobUsage.order_id)
        .where(*where)
        .group_by(JobUsage.order_id)
    ).all()
    by_kind: dict[str, list[float]] = defaultdict(list)
    for kind, _order, cost in per_order:
        by_kind[kind].append(float(cost or 0))
    return CostSummary(
        jobs=int(jobs),
        gpu_seconds=float(seconds or 0),
        cost_usd=float(dollars or 0),
        orders=len(per_order),
        mean_per_order={kind: sum(v) / len(v) for kind, v in sorted(by_kind.items())},
    )


def agents_seen(session: Session, since: float) -> set[str]:
    """Agents that finished a job since ``since``."""
    query = select(JobUsage.agent_id).where(JobUsage.at >= since, JobUsage.agent_id != "").distinct()
    return set(session.exec(query))


# --- throughput, latency, failures ------------------------------------------------------------------------------


def jobs_per_hour(
    session: Session, since: float, until: float, *, bucket_s: float = HOUR
) -> list[dict[str, float]]:
    """Finished jobs in each whole bucket (an hour by default; UTC-aligned) of [since, until]:
    [{hour, train, render, failed}] with every bucket present, ``hour`` being the bucket's start."""
    if bucket_s <= 0:
        raise MetricsError("bucket_s must be positive")
    first = math.floor(since / bucket_s) * bucket_s
    count = int((math.floor(until / bucket_s) * bucket_s - first) // bucket_s) + 1
    buckets = {
        first + i * bucket_s: {"hour": first + i * bucket_s, "train": 0, "render": 0, "failed": 0}
        for i in range(count)
    }
    query = select(JobUsage.at, JobUsage.job_kind, JobUsage.outcome).where(
        JobUsage.at >= since, JobUsage.at <= until
    )
    for at, kind, outcome in session.exec(query):  # type: ignore[arg-type]
        bucket = buckets.get(math.floor(at / bucket_s) * bucket_s)
        if bucket is None:
            continue
        bucket[kind] += 1
        if outcome == "failed":
            bucket["failed"] += 1
    return list(buckets.values())


def failure_ratio(session: Session, since: float) -> tuple[int, int]:
    """(failed, finished) jobs since ``since``."""
    failed, finished = session.exec(
        select(func.sum(func.iif(JobUsage.outcome == "failed", 1, 0)), func.count(JobUsage.event_id)).where(
            JobUsage.at >= since
        )
    ).one()
    return int(failed or 0), int(finished or 0)


def failures_by_code(session: Session, since: float) -> dict[str, int]:
    """Orders that failed since ``since``, by error code, most frequent first."""
    query = (
        select(Order.error_code, func.count(Order.id))
        .where(Order.status == "failed", Order.updated_at >= since)
        .group_by(Order.error_code)
        .order_by(func.count(Order.id).desc())
    )
    return {code or "unknown": int(n) for code, n in session.exec(query)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Latency:
    count: int
    p50_s: float | None
    p95_s: float | None


def percentile(values: list[float], q: int) -> float | None:
    """The q-th percentile (1–99), linear between the closest ranks (numpy's default); None for no values."""
    if not 1 <= q <= 99:
        raise MetricsError(f"percentile must be 1..99, got {q}")
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def time_to_result(session: Session, since: float) -> dict[str, Latency]:
    """p50/p95 seconds from order creation to delivery, by order kind, for orders delivered since ``since``."""
    query = select(Order.kind, Order.created_at, Order.updated_at).where(
        Order.status == "delivered", Order.updated_at >= since
    )
    waits: dict[str, list[float]] = defaultdict(list)
    for kind, created, delivered in session.exec(query):  # type: ignore[arg-type]
        waits[kind].append(max(0.0, delivered - created))
    return {
        kind: Latency(
            len(waits.get(kind, [])), percentile(waits.get(kind, []), 50), percentile(waits.get(kind, []), 95)
        )
        for kind in ("train", "render")
    }


def orders_by_status(session: Session) -> dict[tuple[str, str], int]:
    """(kind, status) → number of orders."""
    query = select(Order.kind, Order.status, func.count(Order.id)).group_by(Order.kind, Order.status)
    return {(kind, status): int(n) for kind, status, n in session.exec(query)}  # type: ignore[arg-type]


def outbox_sent_by_kind(session: Session) -> dict[str, int]:
    """Outbox posts delivered to Discord, by kind, all time."""
    query = (
        select(Delivery.kind, func.count(Delivery.id))
        .where(Delivery.status == "sent")
        .group_by(Delivery.kind)
    )
    return {kind: int(n) for kind, n in session.exec(query)}  # type: ignore[arg-type]


def likeness_scores(
    session: Session, since: float, guild_id: str | None = None
) -> list[tuple[str | None, str | None, str | None, str, float | None]]:
    """(server, model id, model name, verdict, score) of every scored picture since ``since`` (one server's
    only, when ``guild_id`` is given)."""
    picture = (Image.likeness_verdict, Image.likeness_score)
    query = (
        select(Order.guild_id, Order.model_id, TrainedModel.name, *picture)
        .join(Order, col(Order.id) == col(Image.order_id))
        .join(TrainedModel, col(TrainedModel.id) == col(Order.model_id), isouter=True)
        .where(col(Image.likeness_verdict).is_not(None), Image.created_at >= since)
    )
    if guild_id is not None:
        query = query.where(Order.guild_id == guild_id)
    return list(session.exec(query))  # type: ignore[arg-type]


def usage_totals(session: Session) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(job kind, outcome) → (jobs, GPU seconds, dollars), all time: the Prometheus counters."""
    query = select(
        JobUsage.job_kind,
        JobUsage.outcome,
        func.count(JobUsage.event_id),
        func.sum(JobUsage.gpu_seconds),
        func.sum(JobUsage.cost_usd),
    ).group_by(JobUsage.job_kind, JobUsage.outcome)
    return {(k, o): (int(n), float(s or 0), float(c or 0)) for k, o, n, s, c in session.exec(query)}  # type: ignore[arg-type]
