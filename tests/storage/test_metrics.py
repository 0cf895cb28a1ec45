"""storage.metrics against a real migrated SQLite store: samples, job usage, and the dashboard's queries."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from storage import metrics, order_store, read_session, transaction

T0 = 1_764_000_000.0  # a whole hour (UTC)


def _order(engine: Engine, kind: str = "render", created: float = T0) -> str:
    with transaction(engine) as s:
        order = order_store.create_order(s, user_id=7, kind=kind)
        order.created_at = order.updated_at = created
        return order.id


def _usage(
    engine: Engine,
    event_id: str,
    order_id: str,
    *,
    kind: str = "render",
    outcome: str = "done",
    seconds: float = 36.0,
    price: float = 1.0,
    at: float = T0,
    agent: str = "a1",
) -> bool:
    with transaction(engine) as s:
        return metrics.record_job_usage(
            s,
            event_id=event_id,
            order_id=order_id,
            job_id="j-" + event_id,
            job_kind=kind,
            outcome=outcome,
            gpu_seconds=seconds,
            price_per_hour=price,
            agent_id=agent,
            at=at,
        )


def test_samples_round_trip_by_series_and_latest(engine: Engine) -> None:
    with transaction(engine) as s:
        metrics.record_samples(
            s, [("queue_visible", {"queue": "train"}, 3), ("queue_visible", {"queue": "render"}, 0)], at=T0
        )
        metrics.record_samples(s, [("queue_visible", {"queue": "train"}, 5)], at=T0 + 30)
        metrics.record_sample(s, "fleet_agents", 2, at=T0 + 30)
    with read_session(engine) as s:
        got = metrics.series(s, "queue_visible", T0 - 1)
        assert got == {"queue=train": [(T0, 3.0), (T0 + 30, 5.0)], "queue=render": [(T0, 0.0)]}
        assert metrics.series(s, "queue_visible", T0 + 1) == {"queue=train": [(T0 + 30, 5.0)]}
        assert metrics.latest(s, "queue_visible") == {
            "queue=train": (T0 + 30, 5.0),
            "queue=render": (T0, 0.0),
        }
        assert metrics.latest(s, "fleet_agents") == {"": (T0 + 30, 2.0)}
    with transaction(engine) as s:
        assert metrics.prune_samples(s, T0 + 1) == 2
    with read_session(engine) as s:
        assert metrics.series(s, "queue_visible", 0) == {"queue=train": [(T0 + 30, 5.0)]}


@pytest.mark.parametrize(
    "sample",
    [
        ("bad name!", None, 1),
        ("x", {"queue": "a,b"}, 1),
        ("x", {"bad key": "v"}, 1),
        ("x", None, float("nan")),
    ],
)
def test_bad_samples_are_refused_and_nothing_is_written(engine: Engine, sample: tuple) -> None:
    with pytest.raises(metrics.MetricsError), transaction(engine) as s:
        metrics.record_samples(s, [("good", None, 1), sample], at=T0)
    with read_session(engine) as s:
        assert metrics.series(s, "good", 0) == {}


def test_job_usage_is_counted_once_per_event_and_summed_per_order(engine: Engine) -> None:
    a, b = _order(engine, "train"), _order(engine, "render", created=T0 + 10)
    assert _usage(engine, "e1", a, kind="train", seconds=1800, price=0.42)
    assert not _usage(engine, "e1", a, kind="train", seconds=1800, price=0.42)  # a redelivered event
    assert _usage(engine, "e2", a, kind="render", seconds=360, price=0.42, at=T0 + 100)
    assert _usage(engine, "e3", b, seconds=72, price=1.0, outcome="failed", at=T0 + 200, agent="a2")
    with read_session(engine) as s:
        cost_a = metrics.order_cost(s, a)
        assert cost_a is not None and cost_a.jobs == 2
        assert cost_a.gpu_seconds == pytest.approx(2160)
        assert cost_a.cost_usd == pytest.approx(0.42 * 2160 / 3600)
        assert [c.order_id for c in metrics.cost_per_order(s)] == [b, a]  # newest first
        summary = metrics.cost_summary(s, T0 - 1, T0 + 3600)
        assert (summary.jobs, summary.orders) == (3, 2)
        assert summary.cost_usd == pytest.approx(0.252 + 0.02)
        assert summary.mean_per_order == {"render": pytest.approx(0.02), "train": pytest.approx(0.252)}
        assert metrics.failure_ratio(s, T0 - 1) == (1, 3)
        assert metrics.failure_ratio(s, T0 + 150) == (1, 1)
        assert metrics.agents_seen(s, T0 - 1) == {"a1", "a2"}
        assert metrics.agents_seen(s, T0 + 150) == {"a2"}


def test_job_usage_refuses_bad_values(engine: Engine) -> None:
    order = _order(engine)
    with pytest.raises(metrics.MetricsError, match="outcome"):
        _usage(engine, "x1", order, outcome="progress")
    with pytest.raises(metrics.MetricsError, match=">= 0"):
        _usage(engine, "x2", order, seconds=-1)
    with pytest.raises(metrics.MetricsError, match="finite"):
        _usage(engine, "x3", order, seconds=float("inf"))


def test_jobs_per_hour_has_every_hour_and_counts_failures(engine: Engine) -> None:
    order = _order(engine)
    _usage(engine, "h1", order, at=T0 + 10)
    _usage(engine, "h2", order, kind="train", at=T0 + 20, outcome="failed")
    _usage(engine, "h3", order, at=T0 + 2 * 3600 + 5)
    with read_session(engine) as s:
        hours = metrics.jobs_per_hour(s, T0, T0 + 2 * 3600 + 60)
    assert [h["hour"] for h in hours] == [T0, T0 + 3600, T0 + 7200]
    assert [(h["train"], h["render"], h["failed"]) for h in hours] == [(1, 1, 1), (0, 0, 0), (0, 1, 0)]


def test_time_to_result_percentiles_and_failures_by_code(engine: Engine) -> None:
    waits = [60, 120, 180, 240, 600]
    for i, wait in enumerate(waits):
        order_id = _order(engine, "render", created=T0 + i)
        with transaction(engine) as s:
            order_store.transition(s, order_id, "delivered")
            order_store.get_order(s, order_id).updated_at = T0 + i + wait
    for code in ("nsfw", "nsfw", "oom"):
        order_id = _order(engine, "train")
        with transaction(engine) as s:
            order_store.mark_failed(s, order_id, code, "sorry")
    with read_session(engine) as s:
        ttr = metrics.time_to_result(s, T0 - 1)
        assert ttr["render"].count == 5
        assert ttr["render"].p50_s == pytest.approx(180)
        assert ttr["render"].p95_s == pytest.approx(528)  # 240 + 0.8 * (600 - 240)
        assert ttr["train"] == metrics.Latency(0, None, None)
        assert metrics.failures_by_code(s, 0) == {"nsfw": 2, "oom": 1}
        assert metrics.orders_by_status(s)[("render", "delivered")] == 5


def test_percentile_edges() -> None:
    assert metrics.percentile([], 50) is None
    assert metrics.percentile([4.0], 95) == 4.0
    with pytest.raises(metrics.MetricsError):
        metrics.percentile([1.0, 2.0], 100)


def test_series_thinned_in_sqlite_keeps_peaks_and_order(engine: Engine) -> None:
    with transaction(engine) as s:
        for k in range(100):
            metrics.record_sample(
                s, "queue_visible", 50.0 if k == 37 else k % 3, {"queue": "render"}, at=T0 + k
            )
    with read_session(engine) as s:
        full = metrics.series(s, "queue_visible", T0, T0 + 99)["queue=render"]
        thin = metrics.series(s, "queue_visible", T0, T0 + 99, max_points=10)["queue=render"]
    assert len(full) == 100 and len(thin) == 10
    assert max(v for _, v in thin) == 50.0
    assert [at for at, _ in thin] == sorted(at for at, _ in thin) and thin[-1][0] == T0 + 99
    with pytest.raises(metrics.MetricsError), read_session(engine) as s:
        metrics.series(s, "queue_visible", T0, max_points=0)
