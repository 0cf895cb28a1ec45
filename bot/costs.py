"""Cost accounting: GPU seconds and dollars per order, from the agents' done/failed events.

An event names the agent's EC2 instance type; its price comes from the instance price table (cloud/fleet/prices.json
or FLEET_PRICES_FILE, data a self-hoster updates). An agent with no instance type is a self-hosted box and costs
SELF_HOSTED_GPU_PRICE_PER_HOUR. The bot's event consumer calls ``record_event_cost`` in the same transaction in
which it applies the event, so a redelivered event is counted once (one usage row per event id).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.fleet.pricing import InstancePrice, load_prices
from cloud.messages import Event
from cloud.queues import Queues
from storage import lifecycle, metrics, read_session
from storage.settings import Settings

log = logging.getLogger(__name__)

DAY = 86400.0


@lru_cache(maxsize=4)
def _prices(path: str | None) -> dict[str, InstancePrice]:
    return load_prices(path)


def prices_for(settings: Settings) -> dict[str, InstancePrice]:
    """The instance price table the settings name (read once per file)."""
    return _prices(settings.fleet_prices_file)


@dataclass(frozen=True)
class Price:
    per_hour: float
    source: str  # "g5.xlarge spot", "self-hosted", "unknown instance type x (self-hosted price)"


def price_of(settings: Settings, instance_type: str | None, market: str = "spot") -> Price:
    """Dollars per hour of one agent's accelerator."""
    if not instance_type:
        return Price(settings.self_hosted_gpu_price_per_hour, "self-hosted")
    price = prices_for(settings).get(instance_type)
    if price is None:
        # An instance type missing from the table is a table to update, not a reason to drop the job's usage.
        log.warning(
            "no price for instance type %s: using the self-hosted price; add it to the price table",
            instance_type,
        )
        return Price(
            settings.self_hosted_gpu_price_per_hour,
            f"unknown instance type {instance_type} (self-hosted price)",
        )
    return Price(price.on_demand if market == "on_demand" else price.spot, f"{instance_type} {market}")


def market_of(settings: Settings, job_kind: str) -> str:
    """Training always runs on spot; the render pool may run on-demand (FLEET_RENDER_ON_DEMAND)."""
    return "on_demand" if job_kind == "render" and settings.fleet_render_on_demand else "spot"


def record_event_cost(session: Session, event: Event, settings: Settings) -> bool:
    """Record a done/failed event's GPU time and its price on the event's order, once per event id.

    Other event kinds, and a repeat of an event already recorded, change nothing (False). An event without
    ``gpu_seconds`` (an older agent) is recorded with 0 s, so it still counts as a finished job.
    """
    if event.kind not in metrics.JOB_OUTCOMES:
        return False
    price = price_of(settings, event.instance_type, market_of(settings, event.job_kind))
    return lifecycle.record_usage(session, event, price.per_hour)


def start_of_day(at: float) -> float:
    """Midnight UTC of the day ``at`` falls in."""
    return at - at % DAY


def queue_waiting_text(queues: Queues) -> str:
    """What a server's admins may see of the shared fleet: how many jobs wait (as members see in /queue)."""
    lines = [
        f"{name}: {queue.depth().visible} waiting"
        for name, queue in (("train", queues.train), ("render", queues.render))
    ]
    return "\n".join([*lines, "(fleet figures and cost are for the bot's operators)"])


def queue_status_text(
    settings: Settings,
    engine: Engine,
    queues: Queues,
    agents_seen: dict[str, float] | None = None,
    *,
    now: float | None = None,
) -> str:
    """The text block of ``/admin queue``: depths, dead letters, agents, cost today, cost per order.

    Blocking (queue round trips): call it through the bot's ``run_blocking``.
    """
    at = time.time() if now is None else now
    lines = []
    for name, queue in (("train", queues.train), ("render", queues.render), ("events", queues.events)):
        depth = queue.depth()
        lines.append(
            f"{name}: {depth.visible} waiting, {depth.in_flight} in flight"
            + (f", {depth.delayed} delayed" if depth.delayed else "")
            + f", {queue.dead_letter_depth()} dead letters"
        )
    since_agents = at - settings.agent_seen_window_s
    with read_session(engine) as s:
        agents = {a for a, seen in (agents_seen or {}).items() if seen >= since_agents} | metrics.agents_seen(
            s, since_agents
        )
        today = metrics.cost_summary(s, start_of_day(at), at)
        week = metrics.cost_summary(s, at - 7 * DAY, at)
    lines.append(
        f"agents active (last {settings.agent_seen_window_s / 60:g} min): {len(agents)}"
        + (f" ({', '.join(sorted(agents)[:5])}{', …' if len(agents) > 5 else ''})" if agents else "")
    )
    lines.append(
        f"cost today (UTC): ${today.cost_usd:.2f} for {today.jobs} jobs, {today.gpu_seconds / 3600:.2f} GPU-hours"
    )
    per_order = (
        ", ".join(f"{kind} ${cost:.3f}" for kind, cost in week.mean_per_order.items()) or "no orders yet"
    )
    lines.append(f"cost per order (7 days, mean): {per_order}")
    return "\n".join(lines)
