"""Fleet alerts posted to the operators' ALERT_CHANNEL_ID (logged when unset; never to a server's admin log
channel, for they carry operator data): a dead-letter queue holds messages, the failure ratio passes its
threshold, a queue's oldest message is older than the wait objective, a pool's desired capacity has exceeded its
running instances for too long.

``evaluate`` is pure (a Snapshot in, Alerts out). ``take_snapshot`` reads the queues and the order store (blocking).
``AlertRunner`` de-duplicates: an alert is posted when it starts firing, again only after ALERT_COOLDOWN_S while it
keeps firing, and a short "resolved" line is posted when it clears. ``alert_round`` is what the bot runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from cloud.queues import Queues
from storage import metrics, read_session
from storage.settings import Settings

log = logging.getLogger(__name__)

Post = Callable[[int, str], Awaitable[object] | object]


@dataclass(frozen=True)
class Alert:
    key: str  # identity for de-duplication, e.g. "dlq:train"
    severity: str  # "warning" | "critical"
    text: str


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    visible: int
    in_flight: int
    dead_letters: int
    oldest_age_s: float | None  # None: unknown (no backend figure and no sampled history)


@dataclass(frozen=True)
class PoolSnapshot:
    name: str
    desired: int
    running: int
    under_capacity_since: float | None  # desired > running continuously since (PoolState semantics)


@dataclass(frozen=True)
class Snapshot:
    now: float
    queues: Sequence[QueueSnapshot]
    pools: Sequence[PoolSnapshot]
    failed_jobs: int  # in the failure window
    finished_jobs: int


@dataclass(frozen=True)
class Thresholds:
    failure_ratio: float = 0.25
    failure_window_s: float = 3600.0
    failure_min_jobs: int = 4
    wait_objective_s: float = 900.0
    capacity_after_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            failure_ratio=settings.alert_failure_ratio,
            failure_window_s=settings.alert_failure_window_s,
            failure_min_jobs=settings.alert_failure_min_jobs,
            wait_objective_s=settings.alert_wait_objective_s,
            capacity_after_s=settings.alert_capacity_after_s,
        )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def evaluate(snapshot: Snapshot, thresholds: Thresholds) -> list[Alert]:
    """The alerts firing in ``snapshot``."""
    alerts = []
    for q in snapshot.queues:
        if q.dead_letters > 0:
            alerts.append(
                Alert(
                    f"dlq:{q.name}",
                    "critical",
                    f"{q.dead_letters} message(s) in the {q.name} dead-letter queue: jobs that could not be processed "
                    "(inspect and redrive or purge them)",
                )
            )
        if q.oldest_age_s is not None and q.visible > 0 and q.oldest_age_s > thresholds.wait_objective_s:
            alerts.append(
                Alert(
                    f"wait:{q.name}",
                    "warning",
                    f"the oldest message in the {q.name} queue has waited {_minutes(q.oldest_age_s)} "
                    f"(objective {_minutes(thresholds.wait_objective_s)}); {q.visible} waiting, "
                    f"{q.in_flight} in flight",
                )
            )
    if snapshot.finished_jobs >= thresholds.failure_min_jobs and snapshot.finished_jobs > 0:
        ratio = snapshot.failed_jobs / snapshot.finished_jobs
        if ratio >= thresholds.failure_ratio:
            alerts.append(
                Alert(
                    "failure-ratio",
                    "critical",
                    f"{snapshot.failed_jobs} of {snapshot.finished_jobs} jobs failed in the last "
                    f"{_minutes(thresholds.failure_window_s)} ({ratio:.0%} ≥ {thresholds.failure_ratio:.0%})",
                )
            )
    for p in snapshot.pools:
        if p.under_capacity_since is None or p.desired <= p.running:
            continue
        lasting = snapshot.now - p.under_capacity_since
        if lasting >= thresholds.capacity_after_s:
            alerts.append(
                Alert(
                    f"capacity:{p.name}",
                    "warning",
                    f"{p.name} pool: desired capacity {p.desired} but {p.running} running for {_minutes(lasting)} "
                    "(spot capacity short? check the group's scaling activities)",
                )
            )
    return alerts


# --- figures from samples -----------------------------------------------------------------------------------------


def under_capacity_since(
    desired: Sequence[tuple[float, float]], running: Sequence[tuple[float, float]]
) -> float | None:
    """When desired capacity started to exceed running instances without a break, from sampled series
    [(time, value)] taken at the same times; None when the newest sample is not short (PoolState semantics)."""
    running_at = dict(running)
    since = None
    for at, want in desired:
        have = running_at.get(at)
        if have is None:
            continue
        since = (at if since is None else since) if want > have else None
    return since


def nonempty_since(visible: Sequence[tuple[float, float]]) -> float | None:
    """Since when a sampled queue has had visible messages without a break (None if the newest sample is empty).

    The stand-in for the oldest message's age when the queue backend does not report it: a backlog that never
    emptied for that long means the message at its head has waited about that long.
    """
    since = None
    for at, value in visible:
        since = (at if since is None else since) if value > 0 else None
    return since


def _oldest_age(
    queue: object, name: str, samples: dict[str, list[tuple[float, float]]], now: float
) -> float | None:
    reader = getattr(
        queue, "oldest_age_s", None
    )  # a backend may report it (SQS: ApproximateAgeOfOldestMessage)
    if callable(reader):
        try:
            value = reader()
            return None if value is None else float(value)
        except Exception:
            log.warning("queue %s: oldest message age unavailable, using sampled history", name)
    since = nonempty_since(samples.get(metrics.labels_key({"queue": name}), []))
    return None if since is None else now - since


def take_snapshot(
    settings: Settings, engine: Engine, queues: Queues, *, now: float | None = None
) -> Snapshot:
    """Read what the alerts need (blocking: queue round trips and the order store)."""
    at = time.time() if now is None else now
    history = max(settings.alert_wait_objective_s, settings.alert_capacity_after_s) * 2 + 3600
    with read_session(engine) as s:
        visible = metrics.series(s, "queue_visible", at - history)
        desired = metrics.series(s, "fleet_desired", at - history)
        running = metrics.series(s, "fleet_running", at - history)
        failed, finished = metrics.failure_ratio(s, at - settings.alert_failure_window_s)
    qs = []
    for name, queue in (("train", queues.train), ("render", queues.render), ("events", queues.events)):
        depth = queue.depth()
        qs.append(
            QueueSnapshot(
                name,
                depth.visible,
                depth.in_flight,
                queue.dead_letter_depth(),
                _oldest_age(queue, name, visible, at),
            )
        )
    pools = []
    for labels, series in desired.items():
        pool = metrics.parse_labels(labels).get("pool", labels)
        run = running.get(labels, [])
        if series and run:
            pools.append(
                PoolSnapshot(pool, int(series[-1][1]), int(run[-1][1]), under_capacity_since(series, run))
            )
    return Snapshot(now=at, queues=qs, pools=pools, failed_jobs=failed, finished_jobs=finished)


def alert_channels(settings: Settings, engine: Engine) -> list[int]:
    """ALERT_CHANNEL_ID only: alerts carry operator data (dead letters, failure ratios, fleet capacity), never
    posted to the servers' admin log channels. Unset: alerts are only logged."""
    return [settings.alert_channel_id] if settings.alert_channel_id is not None else []


# --- posting, de-duplicated -----------------------------------------------------------------------------------------


def format_alert(alert: Alert) -> str:
    mark = "🔴" if alert.severity == "critical" else "🟠"
    return f"{mark} **Photogen alert** — {alert.text}"


class AlertRunner:
    """Posts alerts once when they start firing, again after ``cooldown_s`` while they still fire, and a resolved
    line when they clear. A post that fails is retried on the next round (the alert is not marked posted)."""

    def __init__(self, post: Post, cooldown_s: float) -> None:
        self._post = post
        self.cooldown_s = cooldown_s
        self.posted_at: dict[str, float] = {}  # alert key → when it was last posted
        self._texts: dict[str, str] = {}

    async def _send(self, channels: Sequence[int], text: str) -> bool:
        if not channels:
            log.warning("%s (ALERT_CHANNEL_ID unset: logged only)", text)
            return True
        ok = True
        for channel in channels:
            try:
                result = self._post(channel, text)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("could not post an alert to channel %s", channel)
                ok = False
        return ok

    async def process(self, alerts: Sequence[Alert], channels: Sequence[int], now: float) -> list[str]:
        """Post what is due; returns the texts posted."""
        sent = []
        firing = {a.key for a in alerts}
        for alert in alerts:
            last = self.posted_at.get(alert.key)
            if last is not None and now - last < self.cooldown_s:
                continue
            text = format_alert(alert)
            if await self._send(channels, text):
                self.posted_at[alert.key] = now
                self._texts[alert.key] = alert.text
                sent.append(text)
        for key in [k for k in self.posted_at if k not in firing]:
            text = f"✅ resolved — {self._texts.get(key, key)}"
            if await self._send(channels, text):
                del self.posted_at[key]
                self._texts.pop(key, None)
                sent.append(text)
        return sent


async def alert_round(settings: Settings, engine: Engine, queues: Queues, runner: AlertRunner) -> list[str]:
    """One round: read (off the event loop), evaluate, post what is due; returns the texts posted. The bot
    runs it every ALERT_INTERVAL_S (bot/cogs/periodic.py) with one AlertRunner, which remembers what was
    posted."""
    snapshot = await asyncio.to_thread(take_snapshot, settings, engine, queues)
    alerts = evaluate(snapshot, Thresholds.from_settings(settings))
    return await runner.process(alerts, alert_channels(settings, engine), snapshot.now)
