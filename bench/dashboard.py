"""Dashboard, /metrics scrape and sampler cost on a full order store: 14 days of 30 s samples (the default
retention), and a busy community's orders and finished jobs (20,000).

Goal: the dashboard's 24 h JSON in <= 500 ms (it runs in a worker thread) and a /metrics scrape in <= 20 ms (median;
it runs on the bot's event loop, so it serves the copy the sampler refreshes in its thread: ``store_read_ms`` is
that refresh), on the 2-core CPU box.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import insert

from bot.dashboard import register_store_metrics, sample_once
from bot.dashboard.data import dashboard_data
from bot.dashboard.page import render_page
from cloud.queues import open_queues
from storage import migrate, open_engine, transaction
from storage.models import JobUsage, MetricSample, Order, User
from storage.settings import load_settings

GOAL_JSON_MS = 500.0
GOAL_SCRAPE_MS = 20.0
SERIES = [
    ("queue_visible", "queue=train"),
    ("queue_visible", "queue=render"),
    ("queue_visible", "queue=events"),
    ("queue_in_flight", "queue=train"),
    ("queue_in_flight", "queue=render"),
    ("queue_in_flight", "queue=events"),
    ("queue_dead_letters", "queue=train"),
    ("queue_dead_letters", "queue=render"),
    ("queue_dead_letters", "queue=events"),
    ("fleet_agents", ""),
    ("fleet_desired", "pool=train"),
    ("fleet_running", "pool=train"),
]


def fill(engine, now: float, days: float, orders_n: int) -> dict[str, int]:
    rng = random.Random(7)
    rounds = int(days * 86400 / 30)
    with transaction(engine) as s:
        s.execute(insert(User), [{"id": "1", "credits": 0, "banned": False, "created_at": now}])
        batch = []
        for k in range(rounds):
            at = now - days * 86400 + 30 * k
            for name, labels in SERIES:
                batch.append({"at": at, "name": name, "labels": labels, "value": float(rng.randint(0, 20))})
            if len(batch) >= 50_000:
                s.execute(insert(MetricSample), batch)
                batch = []
        if batch:
            s.execute(insert(MetricSample), batch)
        order_rows, usage_rows = [], []
        for i in range(orders_n):
            created = now - rng.random() * days * 86400
            kind = "train" if i % 10 == 0 else "render"
            status = rng.choice(["delivered"] * 8 + ["failed", "rendering"])
            order_rows.append(
                {
                    "id": f"o{i}",
                    "user_id": "1",
                    "kind": kind,
                    "status": status,
                    "params": {},
                    "credits_charged": 1,
                    "credits_refunded": 0,
                    "created_at": created,
                    "updated_at": created + rng.uniform(10, 900),
                    "error_code": "render_oom" if status == "failed" else None,
                }
            )
            usage_rows.append(
                {
                    "event_id": f"e{i}",
                    "order_id": f"o{i}",
                    "job_id": f"j{i}",
                    "job_kind": kind,
                    "outcome": "failed" if status == "failed" else "done",
                    "agent_id": f"agent-{i % 6}",
                    "instance_type": "g5.xlarge",
                    "gpu_seconds": 600.0 if kind == "train" else 8.0,
                    "price_per_hour": 0.42,
                    "cost_usd": (600.0 if kind == "train" else 8.0) * 0.42 / 3600,
                    "at": created + 60,
                    "error_code": None,
                }
            )
        s.execute(insert(Order), order_rows)
        s.execute(insert(JobUsage), usage_rows)
    return {"samples": rounds * len(SERIES), "orders": orders_n}


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (same data size)")
    args = parser.parse_args()
    repeat = 3 if args.quick else 10
    started = time.monotonic()
    now = time.time()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            database_url=f"sqlite:///{Path(folder) / 'db.sqlite'}",
            queue_url=f"sqlite:///{Path(folder) / 'q.db'}",
        )
        migrate(settings.database_url)
        engine = open_engine(settings.database_url)
        queues = open_queues(settings)
        try:
            t0 = time.perf_counter()
            size = fill(engine, now, 14, 20_000)
            fill_s = round(time.perf_counter() - t0, 1)
            registry = CollectorRegistry()
            collector = register_store_metrics(engine, registry)
            day = dashboard_data(engine, window_s=86400, now=now)
            page_kb = round(len(render_page(day).encode()) / 1024, 1)
            json_kb = round(len(json.dumps(day).encode()) / 1024, 1)
            figures = {
                **size,
                "fill_s": fill_s,
                "json_24h_ms": timed(lambda: dashboard_data(engine, window_s=86400, now=now), repeat),
                "json_14d_ms": timed(lambda: dashboard_data(engine, window_s=14 * 86400, now=now), repeat),
                "page_24h_ms": timed(
                    lambda: render_page(dashboard_data(engine, window_s=86400, now=now)), repeat
                ),
                "page_24h_kb": page_kb,
                "json_24h_kb": json_kb,
                "scrape_ms": timed(lambda: generate_latest(registry), repeat),
                "store_read_ms": timed(collector.refresh, repeat),
                "sample_round_ms": timed(lambda: sample_once(settings, engine, queues), repeat),
            }
        finally:
            queues.close()
            engine.dispose()
    result = {
        "bench": "dashboard",
        "quick": args.quick,
        **figures,
        "goal": f"24 h dashboard JSON <= {GOAL_JSON_MS:g} ms and /metrics scrape <= {GOAL_SCRAPE_MS:g} ms (median), "
        "14 days of 30 s samples and 20,000 orders",
        "goal_met": figures["json_24h_ms"] <= GOAL_JSON_MS and figures["scrape_ms"] <= GOAL_SCRAPE_MS,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
