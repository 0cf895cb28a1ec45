"""The GPU agent runtime: pulls jobs, keeps leases, survives spot interruptions, resumes, reports progress.

- ``worker``        — ``Agent(settings, ...)`` with ``run(stop_event)``: the job loop and how a message is settled
- ``jobs``          — what a TrainJob / RenderJob handler does (download, engine, upload under storage.keys)
- ``runner``        — the ``JobRunner`` seam to the engine; ``engine_runner.EngineRunner`` is the real one (torch)
- ``lease``         — ``LeaseKeeper``: the heartbeat that extends a job's visibility
- ``spot``          — ``Drain`` and ``SpotWatcher`` (EC2 IMDSv2 spot/rebalance notices)
- ``checkpoints``   — ``CheckpointSync``: the local checkpoint folder ⇄ ``checkpoints/{job_id}/``
- ``report``        — ``Reporter``: the job's Events
- ``metrics``       — Prometheus metrics and the /healthz + /metrics server

Nothing here imports torch until an EngineRunner trains or renders.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

from gpu_agent.agent.runner import Interrupted, JobError, JobRunner, RenderOutcome, TrainOutcome, TrainRequest
from gpu_agent.agent.spot import Drain, SpotWatcher
from gpu_agent.agent.worker import Agent

if TYPE_CHECKING:
    from storage.settings import Settings

__all__ = [
    "ONCE_EXIT_CODES",
    "Agent",
    "Drain",
    "Interrupted",
    "JobError",
    "JobRunner",
    "RenderOutcome",
    "SpotWatcher",
    "TrainOutcome",
    "TrainRequest",
    "run_agent",
]

log = logging.getLogger(__name__)


ONCE_EXIT_CODES = {None: 0, "done": 0, "skipped": 0, "cancelled": 0, "preempted": 75, "lease_lost": 75}
"""``photogen agent --once``: how the one job ended → the process's exit status. 0 when it is settled for good
(or there was none), 75 (EX_TEMPFAIL) when it was handed back (spot reclaim, drain), 1 when it failed (member
told, or released for a retry): AWS Batch retries a non-zero attempt (see cloud/fleet/batch.py)."""


def run_agent(
    settings: Settings,
    *,
    stop_event: threading.Event | None = None,
    runner: JobRunner | None = None,
    once_wait_s: float | None = None,
) -> int:
    """Run an agent until it is stopped; blocks. SIGTERM and SIGINT drain it like a spot notice: training
    checkpoints and releases its job, a render finishes if it can within AGENT_DRAIN_S. Without the ML stack
    it stops at once with one line (MissingMLStack) rather than take jobs it can only fail.

    ``runner``: the engine seam (default: the real EngineRunner); the end-to-end test's launcher passes a
    stand-in there. ``once_wait_s``: take one job (waiting at most that long for one), settle it, and return the
    exit status (ONCE_EXIT_CODES); otherwise 0 once stopped."""
    from gpu_agent.agent.stack import preload_ml_stack, require_ml_stack

    require_ml_stack()
    agent = Agent(settings, runner=runner)
    if runner is None:
        preload_ml_stack()  # the real engine: its imports are not the first member's wait
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: object) -> None:
            if agent.drain.request(signal.Signals(signum).name):
                agent.metrics.spot_interruptions.inc()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    result = agent.run(stop_event, once_wait_s=once_wait_s)
    if once_wait_s is None:
        return 0
    code = ONCE_EXIT_CODES.get(result, 1)
    log.info("agent --once: %s (exit status %d)", result or "no job", code)
    return code
