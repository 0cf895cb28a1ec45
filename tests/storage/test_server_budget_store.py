"""storage/budget.py: GPU time measured per kind and mode of job (median per unit of work, the documented default
before enough is measured), a server's use this month and its open orders, the month's alert bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from storage import budget, metrics, order_store, read_session, transaction
from storage.budget import JobShape

NOV = datetime(2026, 11, 15, 12, tzinfo=UTC).timestamp()
OCT = datetime(2026, 10, 31, 23, 59, tzinfo=UTC).timestamp()


def _finished(
    engine: Engine,
    guild: str,
    seconds: float,
    at: float,
    *,
    mode: str = "txt2img",
    kind: str = "render",
    **p: int,
) -> str:
    params = {"mode": mode, "count": p.get("count", 1), "width": p.get("width", 512), "height": 512}
    with transaction(engine) as s:
        order = order_store.create_order(s, user_id=7, kind=kind, guild_id=guild, params=params)
        order_store.add_job(s, order.id, kind, {"steps": p.get("steps", 30)}, job_id=f"j{order.id}")
        order_store.mark_delivered(s, order.id)
        metrics.record_job_usage(
            s,
            event_id=f"e{order.id}",
            order_id=order.id,
            job_id=f"j{order.id}",
            job_kind=kind,
            outcome="done",
            gpu_seconds=seconds,
            price_per_hour=3.6,
            instance_type="g5.xlarge",
            at=at,
        )
    return order.id


def test_estimate_is_the_default_until_measured_then_the_median_per_unit(engine: Engine) -> None:
    picture = JobShape("render", "txt2img", 1, 512, 512, 30)
    with read_session(engine) as s:
        first = budget.estimate_seconds(s, picture, 30)
    assert first == budget.Measured(budget.DEFAULT_SECONDS_PER_UNIT["render"], 0, False, None)
    # Two measured jobs are not enough; the third makes a median (of 2, 3 and 100 s per unit: 3).
    _finished(engine, "1", 2.0, NOV)
    _finished(engine, "1", 12.0, NOV, count=4)  # four pictures in 12 s: 3 s each
    with read_session(engine) as s:
        assert budget.estimate_seconds(s, picture, 30).samples == 0
    _finished(engine, "2", 100.0, NOV, steps=30)
    with read_session(engine) as s:
        one = budget.estimate_seconds(s, picture, 30)
        big = budget.estimate_seconds(s, JobShape("render", "txt2img", 2, 1024, 512, 15), 30)
        upscale = budget.estimate_seconds(s, JobShape("render", "upscale", 1, 512, 512, 30), 30)
        train = budget.estimate_seconds(s, JobShape("train"), 30)
    assert (one.seconds, one.samples, one.instance_type) == (3.0, 3, "g5.xlarge")
    assert big.seconds == pytest.approx(3.0 * 2 * 2 * 0.5)  # pictures × pixels × steps
    # Another mode or kind is not measured by these: its default, and no pool seen for a training yet.
    assert upscale.seconds == budget.DEFAULT_SECONDS_PER_UNIT["render"] and upscale.instance_seen
    assert train.seconds == budget.DEFAULT_SECONDS_PER_UNIT["train"] and not train.instance_seen


def test_use_this_month_and_open_orders_of_one_server(engine: Engine) -> None:
    _finished(engine, "1", 3600.0, NOV)  # $3.60 in November
    _finished(engine, "1", 7200.0, OCT)  # October: not this month's
    _finished(engine, "2", 360.0, NOV)  # another server's
    used = None
    with transaction(engine) as s:
        order_store.create_order(
            s, user_id=8, kind="render", guild_id="1", params={"mode": "group", "count": 2}
        )
    with read_session(engine) as s:
        used = budget.used_since(s, "1", budget.month_start(NOV))
        open_orders = budget.open_orders(s, "1")
    assert used == budget.Used(usd=pytest.approx(3.6), gpu_seconds=3600.0)
    assert [kind for kind, _ in open_orders] == ["render"] and open_orders[0][1]["mode"] == "group"
    assert budget.month_start(NOV) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert (budget.month_key(NOV), budget.month_name(NOV)) == ("2026-11", "November")


def test_each_alert_is_claimed_once_a_month(engine: Engine) -> None:
    claims = []
    for at, percent in ((NOV, 50), (NOV, 50), (NOV, 80), (NOV, 50), (OCT, 50), (NOV, 100)):
        with transaction(engine) as s:
            claims.append(budget.claim_alert(s, "1", at, percent))
    # A month's alerts only go up; a different month starts again (October after November: its own month).
    assert claims == [True, False, True, False, True, True]
