"""The autoscaler's loop: read queue depth and the groups, decide (autoscaler.decide), set desired capacity."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cloud.fleet.autoscaler import Decision, PoolObservation, PoolPolicy, PoolState, decide
from cloud.queues.base import JobQueue
from storage.settings import Settings

log = logging.getLogger(__name__)

LIVE_STATES = {"Pending", "Pending:Wait", "Pending:Proceed", "InService"}


@dataclass
class Pool:
    policy: PoolPolicy
    group: str
    queue: JobQueue
    state: PoolState = field(default_factory=PoolState)


def policies(settings: Settings) -> dict[str, PoolPolicy]:
    # Mean job times: an SD-1.5 LoRA of 800 steps on an A10G takes ~7 minutes; 4 renders ~8 s (docs/FLEET.md).
    return {
        "train": PoolPolicy(
            "train",
            settings.fleet_train_wait_s,
            420.0,
            0,
            settings.fleet_train_max,
            settings.fleet_scale_in_after_s,
        ),
        "render": PoolPolicy(
            "render",
            settings.fleet_render_wait_s,
            8.0,
            0,
            settings.fleet_render_max,
            settings.fleet_scale_in_after_s,
        ),
    }


def observe(asg: Any, pool: Pool, now: float) -> PoolObservation:
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[pool.group])["AutoScalingGroups"]
    if not group:
        raise RuntimeError(f"auto scaling group {pool.group} does not exist: run `photogen aws bootstrap`")
    g = group[0]
    live = [i for i in g.get("Instances", []) if i["LifecycleState"] in LIVE_STATES]
    depth = pool.queue.depth()
    return PoolObservation(
        now=now,
        visible=depth.visible + depth.delayed,
        in_flight=depth.in_flight,
        desired=g["DesiredCapacity"],
        running=len(live),
        busy=sum(1 for i in live if i.get("ProtectedFromScaleIn")),  # busy agents protect their own instance
    )


def autoscale_once(
    asg: Any, pools: list[Pool], now: float | None = None, dry_run: bool = False
) -> list[Decision]:
    now = time.monotonic() if now is None else now
    decisions = []
    for pool in pools:
        obs = observe(asg, pool, now)
        decision = decide(pool.policy, obs, pool.state)
        pool.state = decision.state
        log.info("autoscaler %s: %s", pool.policy.name, decision.reason)
        if decision.changed and not dry_run:
            asg.set_desired_capacity(
                AutoScalingGroupName=pool.group, DesiredCapacity=decision.desired, HonorCooldown=False
            )
        decisions.append(decision)
    return decisions
