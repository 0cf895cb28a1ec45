"""The dashboard's figures as one JSON-able dict (GET /admin/dashboard.json, and what the page draws)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine

from bot.services import likeness
from storage import budget, metrics, read_session
from storage.safety_log import blocked_count

PER_ORDER_ROWS = 30
# At most this many points per series: a chart 500 px wide shows no more, and a 14-day window of 30 s samples
# (40,000 per series) would otherwise make a multi-megabyte page.
MAX_POINTS = 360


def _points(series: list[tuple[float, float]]) -> list[list[float]]:
    return [[round(at, 3), value] for at, value in series]


def _bucket(window_s: float) -> float:
    """Hourly bars up to three days, daily beyond (a bar chart of 2,000 hours says nothing)."""
    return metrics.HOUR if window_s <= 3 * 86400 else 24 * metrics.HOUR


def dashboard_data(engine: Engine, *, window_s: float, now: float | None = None) -> dict[str, Any]:
    """Queue depth and fleet size over the window, jobs per hour, p50/p95 time to result, failures by code, cost
    per order (blocking: reads the order store)."""
    at = time.time() if now is None else now
    since = at - window_s
    with read_session(engine) as s:
        queue_depth: dict[str, dict[str, list[list[float]]]] = {}
        for metric, field in (
            ("queue_visible", "visible"),
            ("queue_in_flight", "in_flight"),
            ("queue_dead_letters", "dead_letters"),
        ):
            for labels, series in metrics.series(s, metric, since, at, max_points=MAX_POINTS).items():
                name = metrics.parse_labels(labels).get("queue", labels or "?")
                queue_depth.setdefault(name, {})[field] = _points(series)
        fleet: dict[str, list[list[float]]] = {}
        for series in metrics.series(s, "fleet_agents", since, at, max_points=MAX_POINTS).values():
            fleet["agents"] = _points(series)
        for metric in ("fleet_desired", "fleet_running"):
            for labels, series in metrics.series(s, metric, since, at, max_points=MAX_POINTS).items():
                pool = metrics.parse_labels(labels).get("pool", "?")
                fleet[f"{pool} {metric.removeprefix('fleet_')}"] = _points(series)
        latency = metrics.time_to_result(s, since)
        summary = metrics.cost_summary(s, since, at)
        per_order = metrics.cost_per_order(s, since=since, limit=PER_ORDER_ROWS)
        failed, finished = metrics.failure_ratio(s, since)
        data = {
            "generated_at": at,
            "window_s": window_s,
            "queue_depth": queue_depth,
            "fleet_size": fleet,
            "jobs_per_hour": metrics.jobs_per_hour(s, since, at, bucket_s=_bucket(window_s)),
            "time_to_result": {
                kind: {"count": v.count, "p50_s": v.p50_s, "p95_s": v.p95_s} for kind, v in latency.items()
            },
            "failures_by_code": metrics.failures_by_code(s, since),
            "jobs": {"finished": finished, "failed": failed},
            "cost": {
                "jobs": summary.jobs,
                "gpu_seconds": summary.gpu_seconds,
                "usd": summary.cost_usd,
                "orders": summary.orders,
                "mean_per_order_usd": summary.mean_per_order,
                "per_order": [
                    {
                        "order_id": c.order_id,
                        "kind": c.kind,
                        "status": c.status,
                        "created_at": c.created_at,
                        "jobs": c.jobs,
                        "gpu_seconds": c.gpu_seconds,
                        "usd": c.cost_usd,
                    }
                    for c in per_order
                ],
            },
            "budgets": {  # each server's spend this month against its budget (bot/services/budget.py)
                "month": budget.month_name(at),
                "servers": [
                    {
                        "guild_id": m.guild_id,
                        "limit": m.limit,
                        "unit": m.unit,
                        "spent": m.spent,
                        "usd": m.usd,
                        "gpu_seconds": m.gpu_seconds,
                        "percent": round(100 * m.spent / m.limit, 1) if m.limit else None,
                    }
                    for m in budget.servers_this_month(s, at)
                ],
            },
            "pictures_blocked": blocked_count(s, since=since),  # the safety check's (docs/SAFETY.md)
            "orders_by_status": {
                f"{k}/{st}": n for (k, st), n in sorted(metrics.orders_by_status(s).items())
            },
            "likeness": {
                group: [
                    {
                        "key": d.key,
                        "label": d.label,
                        "total": d.total,
                        "verdicts": d.verdicts,
                        "quartiles": d.quartiles,
                    }
                    for d in rows
                ]
                for group, rows in likeness.distributions(s, since).items()
            },
        }
    return data
