"""The dashboard page: one self-contained HTML document (inline CSS and SVG, no script, nothing fetched)."""

from __future__ import annotations

import time
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from bot.dashboard.charts import BOTTOM, LEFT, RIGHT, TOP, Chart, H, W, bar_chart, line_chart

# Autoescaped: server names, model names and error codes come from members and admins; undefined names fail.
_TEMPLATES = Environment(
    loader=PackageLoader("bot.dashboard", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.globals.update(W=W, H=H, LEFT=LEFT, RIGHT=RIGHT, TOP=TOP, BOTTOM=BOTTOM)  # the charts' frame


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g} h"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


_VERDICTS = (
    ("strong", "strong"),
    ("fair", "fair"),
    ("weak", "weak"),
    ("copy", "copy"),
    ("no_face", "no face"),
)


def _likeness_chart(chart_id: str, title: str, rows: list[dict[str, Any]]) -> Chart:
    """Pictures per verdict for each server or model, labelled with the median score (the quartiles are in the
    JSON)."""
    labels = [
        f"{r['label'][:18]} (median {r['quartiles'][1]:.2f})" if r.get("quartiles") else r["label"][:18]
        for r in rows
    ]
    series = {name: [r["verdicts"].get(key, 0) for r in rows] for key, name in _VERDICTS}
    return bar_chart(chart_id, title, labels, series, label_every=max(1, len(labels) // 6))


def render_page(data: dict[str, Any]) -> str:
    t1 = data["generated_at"]
    t0 = t1 - data["window_s"]
    charts = []

    depth_series = {}
    for queue, fields in sorted(data["queue_depth"].items()):
        for field in ("visible", "in_flight", "dead_letters"):
            if fields.get(field):
                depth_series[f"{queue} {field.replace('_', ' ')}"] = fields[field]
    charts.append(
        ("Queue depth", line_chart("queue-depth", "Queue depth over time", depth_series, t0=t0, t1=t1))
    )

    hours = data["jobs_per_hour"]
    daily = len(hours) > 1 and hours[1]["hour"] - hours[0]["hour"] > 3600  # long windows come in days
    labels = [time.strftime("%m-%d" if daily else "%H:00", time.gmtime(h["hour"])) for h in hours]
    per = "day" if daily else "hour"
    charts.append(
        (
            f"Jobs per {per}",
            bar_chart(
                "jobs-per-hour",
                f"Finished jobs per {per}",
                labels,
                {
                    "train": [h["train"] for h in hours],
                    "render": [h["render"] for h in hours],
                    "failed": [h["failed"] for h in hours],
                },
                label_every=max(1, len(labels) // 8),
            ),
        )
    )

    ttr = data["time_to_result"]
    kinds = [k for k in ("train", "render") if ttr.get(k, {}).get("count")]
    charts.append(
        (
            "Time to result (p50 / p95)",
            bar_chart(
                "time-to-result",
                "Time to result",
                [f"{k} ({ttr[k]['count']})" for k in kinds],
                {"p50": [ttr[k]["p50_s"] / 60 for k in kinds], "p95": [ttr[k]["p95_s"] / 60 for k in kinds]},
                unit=" min",
            ),
        )
    )

    failures = data["failures_by_code"]
    charts.append(
        (
            "Failures by code",
            bar_chart(
                "failures", "Failed orders by error code", list(failures), {"orders": list(failures.values())}
            ),
        )
    )

    charts.append(
        ("Fleet size", line_chart("fleet-size", "Fleet size over time", data["fleet_size"], t0=t0, t1=t1))
    )

    per_order = list(reversed(data["cost"]["per_order"]))  # oldest first, left to right
    charts.append(
        (
            "Cost per order",
            bar_chart(
                "cost-per-order",
                "Cost per order (USD)",
                [f"{o['kind']} {o['order_id'][:6]}" for o in per_order],
                {"USD": [o["usd"] for o in per_order]},
                prefix="$",
                label_every=max(1, len(per_order) // 6),
            ),
        )
    )

    for group, title in (("servers", "Likeness per server"), ("models", "Likeness per model")):
        charts.append(
            (title, _likeness_chart(f"likeness-{group}", title, data.get("likeness", {}).get(group, [])))
        )

    cost = data["cost"]
    means = ", ".join(f"{k} ${v:.3f}" for k, v in cost["mean_per_order_usd"].items()) or "–"
    jobs = data["jobs"]
    tiles = [
        ("Finished jobs", f"{jobs['finished']}"),
        ("Failed jobs", f"{jobs['failed']}"),
        ("GPU hours", f"{cost['gpu_seconds'] / 3600:.2f}"),
        ("Estimated cost", f"${cost['usd']:.2f}"),
        ("Mean cost per order", means),
        ("p95 time to result", ", ".join(f"{k} {_dur(ttr[k]['p95_s'])}" for k in kinds) or "–"),
        ("Pictures blocked", f"{data.get('pictures_blocked', 0)}"),
    ]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t1))
    budgets = data.get("budgets") or {"month": "", "servers": []}
    return _TEMPLATES.get_template("dashboard.html.j2").render(
        window=_hours(data["window_s"]),
        stamp=stamp,
        tiles=tiles,
        charts=charts,
        budget_month=budgets["month"],
        budgets=[_budget_row(b) for b in budgets["servers"]],
    )


def _amount(value: float, unit: str) -> str:
    return f"{value:.2f} GPU-h" if unit == "gpu_hours" else f"${value:.2f}"


def _budget_row(row: dict[str, Any]) -> dict[str, Any]:
    """A server's line of the budgets table: spend against budget, and a bar (full and red past 100 %)."""
    unit, limit, percent = row["unit"], row["limit"], row["percent"]
    return {
        "server": row["guild_id"],
        "spent": _amount(row["spent"], unit),
        "budget": _amount(limit, unit) if limit is not None else "no budget",
        "percent": f"{percent:.0f} %" if percent is not None else "–",
        "bar": min(100.0, percent or 0.0),
        "level": "over" if (percent or 0) >= 100 else "high" if (percent or 0) >= 80 else "ok",
    }
