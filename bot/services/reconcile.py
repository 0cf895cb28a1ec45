"""Nothing stays stuck: active orders without a live job get their job sent again once, then fail and refund.

An order loses its job when the agent died on it QUEUE_MAX_RECEIVES times (its message sits in the dead-letter
queue and no event says so), when the bot crashed between committing the order and sending its message (the
order stays ``created``), or when the message is gone (an SQLite queue file that lost its last commits to a
power cut, an SQS message past its retention). Such an order held its credits and a concurrency slot forever.

A candidate is an active order with no news (no event, no progress) for RECONCILE_STUCK_AFTER_S. It is stuck
when its job id is in its queue's dead-letter queue, or it is still ``created``, or its queue is empty (no
message of any order visible, in flight or delayed: SQS cannot be searched for one message, so a non-empty
queue counts as "may still be waiting"). A stuck order's job is sent again once (a dead letter is redriven,
else the stored payload is re-sent with the same job id, so a duplicate is harmless: the agent's done marker
and the applied-event record make it idempotent); stuck again after that, the order is failed, refunded and
the member told. Blocking: runs through bot.run_blocking.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bot.backends import Backends
from cloud.messages import MessageError, RenderJob, TrainJob, encode
from cloud.queues import DeadLetter, JobQueue
from storage import lifecycle

log = logging.getLogger(__name__)

MAX_SENDS = 2  # the first send and one more by the reconciler
# The event consumer takes up to 10 events a poll: more waiting means it is behind (say, the bot was down while
# agents worked), and the news of a quiet order may be among them. No order is judged until it caught up.
EVENTS_BEHIND = 10
STUCK_CODE = "stuck"
STUCK_MESSAGE = (
    "No worker could finish your order, even after a second try. Your credits were refunded; "
    "please try again later."
)


@dataclass(frozen=True)
class Repair:
    order_id: str
    action: str  # "redriven" | "resent" | "failed"


@dataclass(frozen=True)
class _Candidate:
    order_id: str
    status: str
    job_id: str
    job_kind: str
    sends: int
    payload: dict[str, Any]


def job_queue(b: Backends, kind: str) -> JobQueue:
    return b.queues.train if kind == "train" else b.queues.render


def ids_in_body(body: str) -> tuple[str | None, str | None]:
    """(order_id, job_id) named by a queued message's JSON body (a job or an event); Nones where it names
    none."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    order_id, job_id = data.get("order_id"), data.get("job_id")
    return (
        order_id if isinstance(order_id, str) else None,
        job_id if isinstance(job_id, str) else None,
    )


def _dead_jobs(queue: JobQueue) -> dict[str, DeadLetter]:
    if not queue.dead_letter_depth():
        return {}
    found: dict[str, DeadLetter] = {}
    for letter in queue.dead_letters(limit=1000):
        _, job_id = ids_in_body(letter.body)
        if job_id:
            found.setdefault(job_id, letter)
    return found


def reconcile_once(b: Backends, now: float | None = None) -> list[Repair]:
    """One pass; returns what it did."""
    cutoff = (time.time() if now is None else now) - b.settings.reconcile_stuck_after_s
    candidates = [_Candidate(*row) for row in lifecycle.quiet_orders(b.engine, cutoff)]
    if not candidates:
        return []
    if b.queues.events.depth().visible >= EVENTS_BEHIND:
        log.info("reconciler waits: the event consumer is behind")
        return []
    dead: dict[str, DeadLetter] = {}
    empty: dict[str, bool] = {}
    for kind in sorted({c.job_kind for c in candidates}):
        queue = job_queue(b, kind)
        dead.update(_dead_jobs(queue))
        empty[kind] = queue.depth().backlog == 0
    repairs = []
    for c in candidates:
        letter = dead.get(c.job_id)
        if letter is None and c.status != "created" and not empty[c.job_kind]:
            continue  # its message may still be waiting behind others or running: not provably stuck
        try:
            repair = _repair(b, c, letter, cutoff)
        except Exception:
            log.exception("reconciling order %s failed; trying again next round", c.order_id)
            continue
        if repair is not None:
            log.warning("order %s had no live job: %s", c.order_id, repair.action)
            repairs.append(repair)
    return repairs


def _body(c: _Candidate) -> str | None:
    model = TrainJob if c.job_kind == "train" else RenderJob
    try:
        return encode(model.model_validate(c.payload))
    except (ValidationError, MessageError):
        log.error("order %s: the stored job payload no longer validates; it cannot be sent again", c.order_id)
        return None


def _repair(b: Backends, c: _Candidate, letter: DeadLetter | None, cutoff: float) -> Repair | None:
    body = _body(c) if c.sends < MAX_SENDS else None
    if body is not None:
        if not lifecycle.still_quiet(b.engine, c.order_id, cutoff):  # an event or a cancel arrived meanwhile
            return None
        queue = job_queue(b, c.job_kind)
        if letter is not None and queue.redrive(letter.message_id):
            action = "redriven"
        else:
            queue.send(body)
            action = "resent"
        lifecycle.note_job_resent(b.engine, c.order_id, c.job_id)
        return Repair(c.order_id, action)
    failed = lifecycle.fail_stuck_order(b.engine, c.order_id, cutoff, STUCK_CODE, STUCK_MESSAGE)
    return Repair(c.order_id, "failed") if failed else None
