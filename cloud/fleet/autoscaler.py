"""The autoscaler's decision: queue backlog → desired capacity of one agent pool. Pure: no clock, no AWS.

Why not AWS target tracking on "backlog per instance": with zero instances the metric is undefined, so a pool
scaled to zero never wakes on the first message, and target tracking scales in on its own schedule, ignoring which
instances are busy. Here the rule is explicit:

* desired = ceil(backlog / target_per_instance), where backlog = visible + in flight and
  target_per_instance = acceptable wait ÷ mean job time (at least 1: a running job occupies its instance);
* scale out at once;
* scale in only after ``scale_in_after_s`` without demand for the capacity we have, never below the number of busy
  agents (busy agents also hold scale-in protection on their instance, so AWS never picks them);
* zero when idle; one on the first message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class PoolPolicy:
    name: str
    acceptable_wait_s: float
    mean_job_s: float
    min_size: int = 0
    max_size: int = 20
    scale_in_after_s: float = 600.0

    def __post_init__(self) -> None:
        if self.acceptable_wait_s <= 0 or self.mean_job_s <= 0:
            raise ValueError(f"pool {self.name}: acceptable wait and mean job time must be positive")
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError(f"pool {self.name}: need 0 <= min_size <= max_size")

    @property
    def target_per_instance(self) -> float:
        return max(1.0, self.acceptable_wait_s / self.mean_job_s)


@dataclass(frozen=True)
class PoolObservation:
    now: float  # seconds, any monotonic origin
    visible: int
    in_flight: int
    desired: int  # the group's current desired capacity
    running: int  # instances pending or in service
    busy: int  # agents working on a job right now (scale-in protected)

    @property
    def backlog(self) -> int:
        return self.visible + self.in_flight


@dataclass(frozen=True)
class PoolState:
    """What the decision remembers between rounds: when the current capacity was last all needed."""

    last_demand_at: float | None = None
    under_capacity_since: float | None = None  # desired > running since (for the capacity alert)


@dataclass(frozen=True)
class Decision:
    pool: str
    desired: int
    previous: int
    reason: str
    state: PoolState

    @property
    def changed(self) -> bool:
        return self.desired != self.previous


def needed_instances(policy: PoolPolicy, backlog: int) -> int:
    if backlog <= 0:
        return 0
    return math.ceil(backlog / policy.target_per_instance)


def decide(policy: PoolPolicy, obs: PoolObservation, state: PoolState = PoolState()) -> Decision:
    need = needed_instances(policy, obs.backlog)
    floor = max(policy.min_size, obs.busy)
    target = min(policy.max_size, max(need, floor))
    current = obs.desired

    if (need >= current and need > 0) or state.last_demand_at is None:
        state = replace(state, last_demand_at=obs.now)

    if target > current:
        reason = (
            f"scale out {current}→{target}: backlog {obs.backlog} (visible {obs.visible}, in flight "
            f"{obs.in_flight}) at {policy.target_per_instance:g} per instance"
        )
        if need > policy.max_size:
            reason += f", capped at max {policy.max_size}"
        desired = target
    elif target < current:
        idle_for = obs.now - (state.last_demand_at if state.last_demand_at is not None else obs.now)
        if idle_for >= policy.scale_in_after_s:
            desired = target
            why = "idle" if need == 0 else f"backlog {obs.backlog} needs {need}"
            reason = (
                f"scale in {current}→{target}: {why} for {idle_for:.0f}s ≥ {policy.scale_in_after_s:.0f}s"
                + (f", keeping {obs.busy} busy" if obs.busy and target == obs.busy else "")
            )
            state = replace(state, last_demand_at=obs.now)
        else:
            desired = current
            reason = (
                f"hold {current}: would scale in to {target}, but demand was {idle_for:.0f}s ago "
                f"(< {policy.scale_in_after_s:.0f}s)"
            )
    else:
        desired = current
        reason = f"hold {current}: backlog {obs.backlog}, busy {obs.busy}"

    if desired > obs.running:
        if state.under_capacity_since is None:
            state = replace(state, under_capacity_since=obs.now)
    else:
        state = replace(state, under_capacity_since=None)
    return Decision(pool=policy.name, desired=desired, previous=current, reason=reason, state=state)
