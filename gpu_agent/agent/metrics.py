"""Prometheus metrics of one agent, and the small HTTP server for /healthz and /metrics.

Each Agent has its own CollectorRegistry, so several agents in one process (the demo, tests) do not collide.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_WAIT_BUCKETS = (0.5, 1, 5, 15, 30, 60, 180, 600, 1800, 3600)
_PHASE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 1200, 3600)
_CHECKPOINT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            "photogen_agent_jobs",
            "Jobs handled, by kind and result "
            "(done, failed, retry, preempted, lease_lost, duplicate, malformed, cancelled).",
            ["kind", "result"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "photogen_agent_job_duration_seconds",
            "Wall time from receiving a job to its outcome.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "photogen_agent_queue_wait_seconds",
            "Time a job waited in the queue before this agent took it.",
            ["kind"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.spot_interruptions = Counter(
            "photogen_agent_spot_interruptions",
            "Spot interruption/rebalance notices and SIGTERMs seen.",
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "photogen_agent_checkpoint_seconds",
            "Time to copy a training checkpoint to the blob store.",
            buckets=_CHECKPOINT_BUCKETS,
            registry=r,
        )
        self.gpu_seconds = Counter(
            "photogen_agent_gpu_seconds",
            "Accelerator time spent in the engine, by job kind.",
            ["kind"],
            registry=r,
        )
        self.phase_seconds = Histogram(
            "photogen_agent_phase_seconds",
            "Where a job's wall time went, by kind and phase (training: photos, model_load, class_images, "
            "caching, setup, steps, checkpoints, previews, eval, save, upload, first_renders).",
            ["kind", "phase"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.busy = Gauge("photogen_agent_busy", "1 while the agent works on a job.", registry=r)
        self.draining = Gauge(
            "photogen_agent_draining", "1 once the agent winds down (spot notice, SIGTERM).", registry=r
        )

    @contextmanager
    def phase(self, kind: str, phase: str) -> Iterator[None]:
        """Time the block into photogen_agent_phase_seconds{kind, phase} (also when it raises)."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.phase_seconds.labels(kind, phase).observe(time.monotonic() - began)

    def phases(self, kind: str, seconds: dict[str, float]) -> None:
        """Record phases timed elsewhere (the trainer's own clock)."""
        for phase, value in seconds.items():
            self.phase_seconds.labels(kind, phase).observe(max(0.0, float(value)))


class HealthServer:
    """/healthz (JSON, 200 while serving, 503 once draining) and /metrics (Prometheus text format)."""

    def __init__(
        self,
        metrics: AgentMetrics,
        health: Callable[[], tuple[bool, dict[str, Any]]],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, content_type, encoder(registry))
                elif path == "/healthz":
                    ok, body = health()
                    self._reply(200 if ok else 503, "application/json", json.dumps(body).encode())
                else:
                    self._reply(404, "text/plain", b"not found\n")

            def _reply(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="agent-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
