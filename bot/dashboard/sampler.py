"""The sampler: every METRICS_SAMPLE_INTERVAL_S, queue depths and fleet size into the order store's metric_samples,
so the dashboard can chart them over time and the alerts can see how long a condition has lasted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import Engine

from bot.dashboard.metrics import StoreCollector
from cloud.queues import Queues
from storage import metrics, read_session, transaction
from storage.settings import Settings

log = logging.getLogger(__name__)

# Auto scaling lifecycle states that count as a running instance (as cloud.fleet.scaling counts them).
_LIVE = {"Pending", "Pending:Wait", "Pending:Proceed", "InService"}


def _fleet_samples(settings: Settings, asg: Any) -> list[tuple[str, dict[str, str], float]]:
    from cloud.fleet import aws

    names = aws.names_from(settings)
    out: list[tuple[str, dict[str, str], float]] = []
    for pool in ("train", "render"):
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[names.group(pool)])[
            "AutoScalingGroups"
        ]
        if not groups:
            continue
        group = groups[0]
        live = [i for i in group.get("Instances", []) if i["LifecycleState"] in _LIVE]
        out.append(("fleet_desired", {"pool": pool}, group["DesiredCapacity"]))
        out.append(("fleet_running", {"pool": pool}, len(live)))
        out.append(("fleet_busy", {"pool": pool}, sum(1 for i in live if i.get("ProtectedFromScaleIn"))))
    return out


def sample_once(
    settings: Settings,
    engine: Engine,
    queues: Queues,
    *,
    agents_seen: dict[str, float] | None = None,
    asg: Any = None,
    now: float | None = None,
) -> int:
    """Take one round of samples and delete those past retention (blocking). Returns the samples written."""
    at = time.time() if now is None else now
    samples: list[tuple[str, dict[str, str], float]] = []
    for name, queue in (("train", queues.train), ("render", queues.render), ("events", queues.events)):
        depth = queue.depth()
        labels = {"queue": name}
        samples += [
            ("queue_visible", labels, depth.visible + depth.delayed),
            ("queue_in_flight", labels, depth.in_flight),
            ("queue_dead_letters", labels, queue.dead_letter_depth()),
        ]
    window = at - settings.agent_seen_window_s
    with read_session(engine) as s:
        agents = metrics.agents_seen(s, window)
    agents |= {agent for agent, seen in (agents_seen or {}).items() if seen >= window}
    samples.append(("fleet_agents", {}, len(agents)))
    if asg is not None:
        samples += _fleet_samples(settings, asg)
    with transaction(engine) as s:
        written = metrics.record_samples(s, samples, at=at)
        metrics.prune_samples(s, at - settings.metrics_retention_days * 86400)
    return written


async def run_sampler(
    settings: Settings,
    engine: Engine,
    queues: Queues,
    interval_s: float | None = None,
    stop_event: asyncio.Event | None = None,
    *,
    agents_seen: dict[str, float] | None = None,
    asg: Any = None,
    collector: StoreCollector | None = None,
) -> None:
    """Sample every ``interval_s`` (default METRICS_SAMPLE_INTERVAL_S) until ``stop_event`` is set.

    ``agents_seen``: the bot's live map of agent id → last event time (Backends.agents_seen), so agents that only
    sent progress count too. ``asg``: a boto3 auto scaling client when the fleet runs on AWS (desired, running and
    busy instances per pool are sampled then). ``collector``: the StoreCollector from register_store_metrics, refreshed
    here after each round so /metrics scrapes never read the store on the event loop.
    """
    stop = stop_event or asyncio.Event()
    period = settings.metrics_sample_interval_s if interval_s is None else interval_s
    while not stop.is_set():
        try:
            # A copy: the event loop keeps updating the live map while the sample runs in a thread.
            seen = dict(agents_seen) if agents_seen is not None else None
            await asyncio.to_thread(sample_once, settings, engine, queues, agents_seen=seen, asg=asg)
            if collector is not None:
                await asyncio.to_thread(collector.refresh)
        except Exception:
            log.exception("metrics sampling failed; trying again next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period)
