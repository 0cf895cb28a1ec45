"""The dashboard page: one self-contained HTML document (inline CSS and SVG, no script, nothing fetched)."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from bot.dashboard.charts import bar_chart, line_chart


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


def _likeness_chart(chart_id: str, title: str, rows: list[dict[str, Any]]) -> str:
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
    tiles_html = "".join(
        f'<div class="tile"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>'
        for k, v in tiles
    )
    charts_html = "".join(f'<section class="card"><h2>{escape(t)}</h2>{svg}</section>' for t, svg in charts)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Photogen dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f3f4f6;color:#111827}}
header{{background:#111827;color:#f9fafb;padding:14px 24px}} header h1{{margin:0;font-size:20px}}
header p{{margin:4px 0 0;font-size:12px;color:#9ca3af}}
main{{padding:16px 24px}} .tiles{{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}}
.tile{{background:#fff;border-radius:8px;padding:10px 14px;min-width:150px;box-shadow:0 1px 2px #0001}}
.tile .k{{font-size:12px;color:#6b7280}} .tile .v{{font-size:18px;font-weight:600}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(580px,1fr));gap:16px}}
.card{{background:#fff;border-radius:8px;padding:10px;box-shadow:0 1px 2px #0001}}
.card h2{{font-size:14px;margin:2px 4px 8px}}
</style></head>
<body><header><h1>Photogen — fleet dashboard</h1>
<p>last {escape(_hours(data["window_s"]))} · generated {escape(stamp)} · JSON: /admin/dashboard.json</p></header>
<main><div class="tiles">{tiles_html}</div><div class="grid">{charts_html}</div></main></body></html>
"""
