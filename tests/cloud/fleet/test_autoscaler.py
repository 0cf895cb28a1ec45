"""The autoscaler's pure decision function."""

from __future__ import annotations

import pytest

from cloud.fleet.autoscaler import PoolObservation, PoolPolicy, PoolState, decide, needed_instances

TRAIN = PoolPolicy("train", acceptable_wait_s=180, mean_job_s=420, max_size=10, scale_in_after_s=300)
RENDER = PoolPolicy("render", acceptable_wait_s=60, mean_job_s=8, max_size=5, scale_in_after_s=300)


def obs(
    now: float = 0, visible: int = 0, in_flight: int = 0, desired: int = 0, running: int = 0, busy: int = 0
):
    return PoolObservation(
        now=now, visible=visible, in_flight=in_flight, desired=desired, running=running, busy=busy
    )


def test_scales_from_zero_on_the_first_message() -> None:
    d = decide(TRAIN, obs(visible=1))
    assert d.desired == 1 and d.changed
    assert "scale out 0→1" in d.reason


def test_training_needs_one_instance_per_job_render_packs_by_target() -> None:
    assert TRAIN.target_per_instance == 1.0
    assert needed_instances(TRAIN, 7) == 7
    assert RENDER.target_per_instance == 7.5
    assert needed_instances(RENDER, 16) == 3
    assert needed_instances(RENDER, 0) == 0


def test_scale_out_is_immediate_and_capped() -> None:
    d = decide(TRAIN, obs(visible=30, desired=2, running=2, busy=2))
    assert d.desired == 10
    assert "capped at max 10" in d.reason


def test_scale_in_waits_for_the_idle_period() -> None:
    state = PoolState()
    d = decide(TRAIN, obs(now=0, visible=3, desired=0), state)
    assert d.desired == 3
    # the backlog is gone at t=60: hold, demand was recent
    d = decide(TRAIN, obs(now=60, desired=3, running=3), d.state)
    assert d.desired == 3 and "hold" in d.reason
    d = decide(TRAIN, obs(now=299, desired=3, running=3), d.state)
    assert d.desired == 3
    d = decide(TRAIN, obs(now=301, desired=3, running=3), d.state)
    assert d.desired == 0 and "scale in 3→0: idle" in d.reason


def test_never_scales_in_below_busy_agents() -> None:
    d = decide(
        TRAIN,
        obs(now=0, visible=0, in_flight=0, desired=4, running=4, busy=2),
        PoolState(last_demand_at=-1000),
    )
    assert d.desired == 2
    assert "keeping 2 busy" in d.reason


def test_respects_min_size() -> None:
    policy = PoolPolicy(
        "render", acceptable_wait_s=60, mean_job_s=8, min_size=1, max_size=5, scale_in_after_s=0
    )
    d = decide(policy, obs(now=10, desired=3, running=3), PoolState(last_demand_at=0))
    assert d.desired == 1


def test_tracks_time_under_capacity_for_the_alert() -> None:
    d = decide(TRAIN, obs(now=0, visible=2, desired=0, running=0))
    assert d.state.under_capacity_since == 0
    d = decide(TRAIN, obs(now=30, visible=2, desired=2, running=0), d.state)
    assert d.state.under_capacity_since == 0
    d = decide(TRAIN, obs(now=120, in_flight=2, desired=2, running=2, busy=2), d.state)
    assert d.state.under_capacity_since is None


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(acceptable_wait_s=0, mean_job_s=1),
        dict(acceptable_wait_s=1, mean_job_s=-1),
        dict(acceptable_wait_s=1, mean_job_s=1, min_size=3, max_size=2),
    ],
)
def test_bad_policies_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PoolPolicy("x", **kwargs)
