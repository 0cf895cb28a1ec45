"""Prometheus figures of the order store and the sampled queues.

A custom collector (not counters bumped in place) because the truth lives in SQLite: a bot restart loses no count,
and the figures agree with the dashboard. Queue depths come from the sampler's newest samples, so a scrape never
waits on SQS. Reading the store takes tens of milliseconds on a big one, and /metrics is served on the bot's event
loop, so the sampler refreshes the figures in its worker thread (``refresh``) and a scrape serves that copy; a
scrape reads the store itself only when no fresh copy exists (no sampler running).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from storage import metrics, read_session


class StoreCollector(Collector):
    def __init__(self, engine: Engine, stale_after_s: float = 600.0, max_age_s: float = 120.0) -> None:
        self.engine = engine
        # Only samples this recent are reported: a stopped sampler must not show a frozen depth forever (and the
        # bound keeps the newest-sample query on a short index range).
        self.stale_after_s = stale_after_s
        self.max_age_s = max_age_s  # a refreshed copy older than this is read again at scrape time
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cached = self._cached
        if cached is None or time.monotonic() - cached[0] > self.max_age_s:
            yield from self.refresh()
        else:
            yield from cached[1]

    def read_from(self, engine: Engine) -> None:
        """Report ``engine``'s figures from now on (the copy of the old store's is dropped)."""
        with self._lock:
            self.engine = engine
            self._cached = None

    def refresh(self) -> list[Metric]:
        """Read the store now and keep the figures for the next scrapes (blocking: call from a worker thread)."""
        families = self._read()
        with self._lock:
            self._cached = (time.monotonic(), families)
        return families

    def _read(self) -> list[Metric]:
        orders = GaugeMetricFamily(
            "photogen_orders", "Orders in the store by kind and status", labels=["kind", "status"]
        )
        failures = GaugeMetricFamily("photogen_orders_failed", "Failed orders by error code", labels=["code"])
        delivered = CounterMetricFamily(
            "photogen_outbox_sent", "Outbox posts delivered to Discord", labels=["kind"]
        )
        jobs = CounterMetricFamily(
            "photogen_jobs_finished", "Finished jobs (done/failed events)", labels=["kind", "outcome"]
        )
        gpu = CounterMetricFamily(
            "photogen_gpu_seconds", "Accelerator seconds used by finished jobs", labels=["kind"]
        )
        cost = CounterMetricFamily(
            "photogen_estimated_cost_usd", "Estimated GPU cost of finished jobs", labels=["kind"]
        )
        depth = GaugeMetricFamily("photogen_queue_messages", "Sampled queue depth", labels=["queue", "state"])
        agents = GaugeMetricFamily("photogen_fleet_agents", "Agents seen recently (sampled)")
        fresh = time.time() - self.stale_after_s
        with read_session(self.engine) as s:
            for (kind, status), n in sorted(metrics.orders_by_status(s).items()):
                orders.add_metric([kind, status], n)
            for code, n in metrics.failures_by_code(s, 0).items():
                failures.add_metric([code], n)
            for kind, n in metrics.outbox_sent_by_kind(s).items():
                delivered.add_metric([kind], n)
            gpu_by_kind: dict[str, list[float]] = {}
            for (kind, outcome), (n, seconds, dollars) in sorted(metrics.usage_totals(s).items()):
                jobs.add_metric([kind, outcome], n)
                acc = gpu_by_kind.setdefault(kind, [0.0, 0.0])
                acc[0] += seconds
                acc[1] += dollars
            for kind, (seconds, dollars) in gpu_by_kind.items():
                gpu.add_metric([kind], seconds)
                cost.add_metric([kind], dollars)
            for metric, state in (
                ("queue_visible", "visible"),
                ("queue_in_flight", "in_flight"),
                ("queue_dead_letters", "dead_letters"),
            ):
                for labels, (_at, value) in sorted(metrics.latest(s, metric, since=fresh).items()):
                    depth.add_metric([metrics.parse_labels(labels).get("queue", labels), state], value)
            newest = metrics.latest(s, "fleet_agents", since=fresh)
            if newest:
                agents.add_metric([], next(iter(newest.values()))[1])
        return [orders, failures, delivered, jobs, gpu, cost, depth, agents]


def register_store_metrics(
    engine: Engine, registry: CollectorRegistry = REGISTRY, *, stale_after_s: float = 600.0
) -> StoreCollector:
    """Add the store's figures to ``registry`` (the default one is what the bot's /metrics serves).
    Call once per process; ``registry.unregister(collector)`` undoes it."""
    collector = StoreCollector(engine, stale_after_s)
    registry.register(collector)
    return collector


_process_collector: StoreCollector | None = None


def process_store_metrics(engine: Engine) -> StoreCollector:
    """The default registry's StoreCollector, registered on the first call, reading ``engine`` from then on.

    prometheus_client takes one collector per metric name per registry, and the default registry lives as
    long as the process: a bot started again in the same process (tests, the demo) re-points the one
    collector at its own store instead of registering a second."""
    global _process_collector
    if _process_collector is None:
        _process_collector = register_store_metrics(engine)
    else:
        _process_collector.read_from(engine)
    return _process_collector
