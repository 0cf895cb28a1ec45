"""Alerts: the pure evaluation, the sampled-history helpers, de-duplicated posting, and a snapshot read from a real
SQLite queue and order store."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.alerts import (
    Alert,
    AlertRunner,
    PoolSnapshot,
    QueueSnapshot,
    Snapshot,
    Thresholds,
    alert_channels,
    alert_round,
    evaluate,
    nonempty_since,
    take_snapshot,
    under_capacity_since,
)
from cloud.queues import open_queues
from storage import metrics, migrate, open_engine, order_store, transaction
from storage.settings import load_settings

TH = Thresholds(
    failure_ratio=0.25, failure_window_s=3600, failure_min_jobs=4, wait_objective_s=900, capacity_after_s=600
)


def _q(name: str = "train", visible: int = 0, dead: int = 0, age: float | None = None) -> QueueSnapshot:
    return QueueSnapshot(name, visible, 0, dead, age)


def _snap(queues=(), pools=(), failed: int = 0, finished: int = 0, now: float = 10_000.0) -> Snapshot:
    return Snapshot(
        now=now, queues=list(queues), pools=list(pools), failed_jobs=failed, finished_jobs=finished
    )


def test_quiet_fleet_raises_nothing() -> None:
    snap = _snap(
        [_q("train", 2, 0, 60), _q("render")], [PoolSnapshot("train", 1, 1, None)], failed=1, finished=10
    )
    assert evaluate(snap, TH) == []


def test_dead_letters_alert_per_queue() -> None:
    alerts = evaluate(_snap([_q("train", dead=2), _q("render", dead=0), _q("events", dead=1)]), TH)
    assert [(a.key, a.severity) for a in alerts] == [("dlq:train", "critical"), ("dlq:events", "critical")]
    assert "2 message(s) in the train dead-letter queue" in alerts[0].text


def test_oldest_message_alert_needs_waiting_messages_older_than_the_objective() -> None:
    assert evaluate(_snap([_q("render", visible=3, age=899)]), TH) == []
    assert evaluate(_snap([_q("render", visible=0, age=5000)]), TH) == []  # nothing waits: a stale figure
    (alert,) = evaluate(_snap([_q("render", visible=3, age=1800)]), TH)
    assert alert.key == "wait:render" and "30 min" in alert.text and "objective 15 min" in alert.text


@pytest.mark.parametrize(
    ("failed", "finished", "fires"), [(1, 4, True), (3, 3, False), (2, 10, False), (5, 10, True)]
)
def test_failure_ratio_alert_needs_enough_jobs(failed: int, finished: int, fires: bool) -> None:
    keys = [a.key for a in evaluate(_snap(failed=failed, finished=finished), TH)]
    assert keys == (["failure-ratio"] if fires else [])


def test_capacity_alert_after_ten_minutes_short() -> None:
    short_9 = PoolSnapshot("train", desired=3, running=1, under_capacity_since=10_000 - 540)
    short_10 = PoolSnapshot("render", desired=2, running=0, under_capacity_since=10_000 - 600)
    recovered = PoolSnapshot("train", desired=3, running=3, under_capacity_since=1)
    alerts = evaluate(_snap(pools=[short_9, short_10, recovered]), TH)
    assert [a.key for a in alerts] == ["capacity:render"]
    assert "desired capacity 2 but 0 running for 10 min" in alerts[0].text


def test_under_capacity_since_follows_pool_state_semantics() -> None:
    desired = [(0, 1), (30, 3), (60, 3), (90, 3)]
    assert under_capacity_since(desired, [(0, 1), (30, 1), (60, 2), (90, 2)]) == 30
    assert (
        under_capacity_since(desired, [(0, 1), (30, 1), (60, 3), (90, 2)]) == 90
    )  # a break restarts the clock
    assert under_capacity_since(desired, [(0, 1), (30, 1), (60, 2), (90, 3)]) is None
    assert nonempty_since([(0, 0), (30, 4), (60, 1), (90, 2)]) == 30
    assert nonempty_since([(0, 3), (30, 0)]) is None


async def test_runner_posts_once_then_after_cooldown_and_resolves() -> None:
    posted: list[tuple[int, str]] = []

    async def post(channel: int, text: str) -> None:
        posted.append((channel, text))

    runner = AlertRunner(post, cooldown_s=3600)
    dlq = Alert("dlq:train", "critical", "2 message(s) in the train dead-letter queue")
    assert len(await runner.process([dlq], [11, 12], now=0)) == 1
    assert [c for c, _ in posted] == [11, 12] and "Photogen alert" in posted[0][1]
    assert await runner.process([dlq], [11, 12], now=60) == []  # still firing, within the cool-down
    assert len(await runner.process([dlq], [11], now=3601)) == 1  # reminded after the cool-down
    resolved = await runner.process([], [11], now=3700)
    assert resolved == ["✅ resolved — 2 message(s) in the train dead-letter queue"]
    assert await runner.process([], [11], now=3800) == []
    assert (
        len(await runner.process([dlq], [11], now=3900)) == 1
    )  # fires again after it cleared: posted at once


async def test_runner_retries_a_failed_post_next_round() -> None:
    calls: list[str] = []

    def flaky(channel: int, text: str) -> None:  # a plain (non-async) callable is accepted too
        calls.append(text)
        if len(calls) == 1:
            raise RuntimeError("discord is down")

    runner = AlertRunner(flaky, cooldown_s=3600)
    alert = Alert("failure-ratio", "critical", "3 of 4 jobs failed")
    assert await runner.process([alert], [1], now=0) == []
    assert len(await runner.process([alert], [1], now=30)) == 1
    assert len(calls) == 2


def _backends(tmp_path: Path, **overrides: object):
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/db.sqlite", queue_url=f"sqlite:///{tmp_path}/q.db", **overrides
    )
    migrate(settings.database_url)
    return settings, open_engine(settings.database_url), open_queues(settings)


def test_snapshot_from_real_queue_and_store(tmp_path: Path) -> None:
    settings, engine, queues = _backends(tmp_path)
    try:
        now = 1_764_000_000.0
        queues.render.send("{}")
        lease = queues.train.send("{}") and queues.train.receive(1, lease_s=60)[0]
        queues.train.dead_letter(lease, "malformed")
        with transaction(engine) as s:
            order = order_store.create_order(s, user_id=1, kind="render")
            for i, outcome in enumerate(["done", "failed", "failed", "done"]):
                metrics.record_job_usage(
                    s,
                    event_id=f"e{i}",
                    order_id=order.id,
                    job_id="j",
                    job_kind="render",
                    outcome=outcome,
                    gpu_seconds=10,
                    price_per_hour=1,
                    at=now - 60,
                )
            # The render queue has been non-empty for 20 minutes; the train pool short of capacity for 11.
            for k in range(41):
                at = now - 1200 + 30 * k
                metrics.record_samples(s, [("queue_visible", {"queue": "render"}, 1)], at=at)
            for k in range(23):
                at = now - 660 + 30 * k
                metrics.record_samples(
                    s,
                    [("fleet_desired", {"pool": "train"}, 2), ("fleet_running", {"pool": "train"}, 1)],
                    at=at,
                )
        snap = take_snapshot(settings, engine, queues, now=now)
        by_name = {q.name: q for q in snap.queues}
        assert by_name["train"].dead_letters == 1 and by_name["render"].visible == 1
        assert by_name["render"].oldest_age_s == pytest.approx(1200)
        assert (snap.failed_jobs, snap.finished_jobs) == (2, 4)
        assert snap.pools == [PoolSnapshot("train", 2, 1, now - 660)]
        keys = {a.key for a in evaluate(snap, Thresholds.from_settings(settings))}
        assert keys == {"dlq:train", "wait:render", "failure-ratio", "capacity:train"}
    finally:
        queues.close()
        engine.dispose()


async def test_alerts_go_to_the_operators_channel_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Alerts carry operator data (dead letters, failure ratios, capacity): never a server's admin log channel.
    settings, engine, queues = _backends(tmp_path)
    try:
        with transaction(engine) as s:
            order_store.update_guild_settings(s, 5, admin_log_channel_id=777)
            order_store.update_guild_settings(s, 6, admin_log_channel_id=None)
        assert alert_channels(settings, engine) == []
        operators = load_settings(alert_channel_id=42, database_url=settings.database_url)
        assert alert_channels(operators, engine) == [42]
        lease = queues.events.send("{}") and queues.events.receive(1, lease_s=60)[0]
        queues.events.dead_letter(lease, "unknown version")
        posted: list[tuple[int, str]] = []

        async def post(channel: int, text: str) -> None:
            posted.append((channel, text))

        # No ALERT_CHANNEL_ID: the alert is logged, posted nowhere (777 is a server's admin log channel).
        caplog.set_level("WARNING", logger="bot.alerts")
        await alert_round(settings, engine, queues, AlertRunner(post, settings.alert_cooldown_s))
        assert "events dead-letter queue" in caplog.text and posted == []

        sent = await alert_round(operators, engine, queues, AlertRunner(post, operators.alert_cooldown_s))
        assert posted and {c for c, _ in posted} == {42} and "events dead-letter queue" in posted[0][1]
        assert sent == [text for _, text in posted]
    finally:
        queues.close()
        engine.dispose()
