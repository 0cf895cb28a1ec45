"""An agent's event applied to its order, exactly once: the event-to-status mapping, the trust check, the
pictures and posts it makes, the model it readies, the GPU time it used — all in one transaction.

Storage does not import the queue messages (cloud/messages.py imports storage): ``AgentEvent`` is the shape of
``cloud.messages.Event`` this module reads, and Event satisfies it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from storage import keys, metrics, webhooks
from storage import order_store as rows
from storage.api_store import tenant_of_guild
from storage.blobs.base import InvalidKey, validate_key
from storage.contracts import EventKind, JobKind, OrderStatus
from storage.db import transaction
from storage.lifecycle.records import Applied
from storage.models import FINAL_STATUSES, Image, Order, TrainedModel
from storage.order_store import NewDelivery, NewImage


class _Dumps(Protocol):
    def model_dump(self) -> dict[str, Any]: ...


class _Progress(Protocol):
    @property
    def step(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def eta_s(self) -> float | None: ...
    @property
    def preview_key(self) -> str | None: ...


class _Error(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def message(self) -> str: ...


class _Likeness(_Dumps, Protocol):
    @property
    def verdict(self) -> str: ...
    @property
    def score(self) -> float | None: ...
    @property
    def tries(self) -> int: ...
    @property
    def seed(self) -> int | None: ...


class AgentEvent(Protocol):
    """What an agent reports (cloud.messages.Event)."""

    @property
    def event_id(self) -> str: ...
    @property
    def job_id(self) -> str: ...
    @property
    def order_id(self) -> str: ...
    @property
    def job_kind(self) -> JobKind: ...
    @property
    def kind(self) -> EventKind: ...
    @property
    def progress(self) -> _Progress | None: ...
    @property
    def output_keys(self) -> Sequence[str]: ...
    @property
    def model_key(self) -> str | None: ...
    @property
    def render_keys(self) -> Sequence[str]: ...
    @property
    def error(self) -> _Error | None: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def gpu_seconds(self) -> float | None: ...
    @property
    def instance_type(self) -> str | None: ...
    @property
    def likeness(self) -> Sequence[_Likeness] | None: ...
    @property
    def safety(self) -> Sequence[_Dumps]: ...
    @property
    def at(self) -> Any: ...  # a datetime


# The status a started event moves an order of each kind to.
_STARTED = {JobKind.TRAIN: OrderStatus.TRAINING, JobKind.RENDER: OrderStatus.RENDERING}
PREEMPTED_NOTICE = "Paused: the GPU was reclaimed; resuming soon."
#: Likeness verdicts that count towards a model's advice post.
FAILING = ("weak", "copy", "no_face")


def forged_reason(event: AgentEvent, owner_id: str, kind: str, job_ids: Collection[str]) -> str | None:
    """Why ``event`` cannot belong to the order owned by ``owner_id`` with these jobs; None when it can.

    Anything that can write to the events queue can claim anything: an event is accepted only when its job is
    one of the order's jobs and every blob key it names (outputs, preview) lies under the owner's prefix."""
    if event.job_id not in job_ids:
        return f"job {event.job_id} is not one of order {event.order_id}'s jobs"
    if event.job_kind != kind:
        return f"a {event.job_kind} event for a {kind} order"
    allowed = keys.user_prefix(owner_id)
    named = [*event.output_keys, *event.render_keys, *([event.model_key] if event.model_key else [])]
    if event.progress is not None and event.progress.preview_key is not None:
        named.append(event.progress.preview_key)
    for key in named:
        try:
            validate_key(key)
        except InvalidKey:
            return "a malformed blob key"
        if not key.startswith(allowed):
            return f"blob key {key[:120]!r} outside the owner's prefix"
    return None


def image_fields(event: AgentEvent, index: int) -> dict[str, Any]:
    """The likeness columns of picture ``index`` of a done event (none when it was not scored)."""
    scores = event.likeness or []
    if index >= len(scores):
        return {}
    score = scores[index]
    return {"likeness_verdict": score.verdict, "likeness_score": score.score, "likeness_tries": score.tries}


def _seed_of(event: AgentEvent, index: int, own: int) -> int:
    """The seed picture ``index`` was made from: an automatic re-roll's when one was kept, else the job's own."""
    scores = event.likeness or []
    rerolled = scores[index].seed if index < len(scores) else None
    return own if rerolled is None else int(rerolled)


def augmented_payload(event: AgentEvent) -> dict[str, int] | None:
    """A training's augmented set (photos, images), as the result post needs it; None when trained as is.
    Read with getattr: an older agent's event (and other AgentEvent implementations) have no such field."""
    augmented = getattr(event, "augmented", None)
    if augmented is None:
        return None
    return {"photos": int(augmented.photos), "images": int(augmented.images)}


def likeness_payload(event: AgentEvent) -> list[dict[str, Any]]:
    """The scores as the result post needs them (outbox payloads are JSON)."""
    return [s.model_dump() for s in event.likeness or []]


def failing_count(session: Session, model_id: str) -> int:
    """Pictures of the model whose likeness failed so far."""
    query = (
        select(func.count())
        .select_from(Image)
        .join(Order, col(Order.id) == col(Image.order_id))
        .where(Order.model_id == model_id, col(Image.likeness_verdict).in_(FAILING))
    )
    return int(session.exec(query).one())


def _advice(session: Session, order: Order, event: AgentEvent, after: int) -> NewDelivery | None:
    """The advice post, when this event's pictures take the model's failing count to ``after`` or past it."""
    failing_now = [s.verdict for s in event.likeness or [] if s.verdict in FAILING]
    if not failing_now or not order.model_id:
        return None
    before = failing_count(session, order.model_id)
    if not before < after <= before + len(failing_now):
        return None
    model = session.get(TrainedModel, order.model_id)
    copies = sum(1 for v in failing_now if v == "copy") * 2 > len(failing_now)
    return NewDelivery(
        "likeness_advice",
        {
            "channel_id": order.channel_id,
            "user_id": order.user_id,
            "model_name": model.name if model else "",
            "failing": before + len(failing_now),
            "copies": copies,
        },
    )


def record_usage(session: Session, event: AgentEvent, price_per_hour: float) -> bool:
    """A done/failed event's GPU time and price on its order, once per event id (False for other kinds or a
    repeat). An event without ``gpu_seconds`` (an older agent) counts 0 s: still a finished job."""
    if event.kind not in metrics.JOB_OUTCOMES:
        return False
    return metrics.record_job_usage(
        session,
        event_id=event.event_id,
        order_id=event.order_id,
        job_id=event.job_id,
        job_kind=event.job_kind,
        outcome=event.kind,
        gpu_seconds=event.gpu_seconds or 0.0,
        price_per_hour=price_per_hour,
        agent_id=event.agent_id,
        instance_type=event.instance_type,
        error_code=event.error.code if event.error else None,
        # The agent's finishing time, never in the future: a skewed clock must not move cost to tomorrow.
        at=min(event.at.timestamp(), time.time()),
    )


def apply_event(engine: Engine, event: AgentEvent, *, price_per_hour: float, advice_after: int) -> Applied:
    """One agent event → its order, exactly once (the event id is recorded in the same transaction).

    started → training/rendering; done → a render order delivered with its pictures and result post, a train
    order trained, its model ready (``event.model_key``) and the order delivered; failed → failed, refunded;
    preempted → a notice. ``price_per_hour``: the GPU's price, for the usage row of a done/failed event;
    ``advice_after``: weak pictures of one model before its owner is advised (LIKENESS_ADVICE_AFTER)."""
    with transaction(engine) as s:
        order = rows.get_order(s, event.order_id)
        job_ids = [j.id for j in rows.jobs_of_order(s, event.order_id)] if order else []
        forged = None if order is None else forged_reason(event, order.user_id, order.kind, job_ids)
        if order is None or forged is not None:
            # Unknown order (forgotten member, cancelled and purged) or an event naming someone else's job or
            # blobs: record the id so a redelivery is a no-op, change nothing, post nothing.
            rows.claim_event(s, event.event_id, None)
            return Applied(duplicate=False, order_id=None, final=False, outbox=False, forged=forged)
        kw, images, deliveries = _changes(s, order, event, advice_after)
        if tenant_of_guild(order.guild_id) is not None:
            deliveries = []  # an API order: announced to its tenant's webhooks, not posted to Discord
        outcome = rows.apply_event(
            s, event.event_id, event.order_id, deliveries=deliveries, images=images, **kw
        )
        if not outcome.applied:
            return Applied(duplicate=True, order_id=event.order_id, final=False, outbox=False)
        record_usage(s, event, price_per_hour)
        if outcome.moved and order.kind == JobKind.TRAIN and order.model_id:
            if kw.get("status") == OrderStatus.TRAINED:
                rows.mark_model_ready(
                    s, order.model_id, event.model_key or keys.model_key(order.user_id, order.model_id)
                )
                # A trained model is the train order's delivery: the order is done.
                rows.mark_delivered(s, event.order_id)
            elif kw.get("status") == OrderStatus.FAILED:
                rows.mark_model_failed(s, order.model_id)
        if outcome.moved:
            webhooks.record_order_event(s, event.order_id)
        final = rows.get_order(s, event.order_id)
        return Applied(
            duplicate=False,
            order_id=event.order_id,
            final=bool(final and final.status in FINAL_STATUSES),
            outbox=bool(deliveries) and outcome.moved,
        )


def _changes(
    s: Session, order: Order, event: AgentEvent, advice_after: int
) -> tuple[dict[str, Any], list[NewImage], list[NewDelivery]]:
    """The event-to-status mapping: the order's changes, picture rows and posts one event makes."""
    kw: dict[str, Any] = {}
    images: list[NewImage] = []
    deliveries: list[NewDelivery] = []
    if event.progress is not None:
        p = event.progress
        kw.update(step=p.step, total=p.total, eta_s=p.eta_s, preview_key=p.preview_key)
    if event.kind == EventKind.PREEMPTED:
        kw["notice"] = event.error.message if event.error else PREEMPTED_NOTICE
    elif event.kind != EventKind.CHECKPOINT:
        kw["notice"] = None  # the work goes on (or ended): the pause is over
    # The agent's safety verdicts, and the guild whose policy the post applies (bot/services/safety.py).
    base: dict[str, Any] = {
        "channel_id": order.channel_id,
        "user_id": order.user_id,
        "guild_id": order.guild_id,
        "safety": [v.model_dump() for v in event.safety],
    }
    render_keys = list(event.render_keys)
    if event.kind == EventKind.STARTED:
        kw["status"] = _STARTED[JobKind(order.kind)]
    elif event.kind == EventKind.DONE and order.kind == JobKind.RENDER:
        kw["status"] = OrderStatus.DELIVERED
        images = [
            NewImage(
                blob_key=k,
                index=i,
                job_id=event.job_id,
                seed=_seed_of(event, i, order.params.get("seed", 0) + i),
                prompt=order.prompt,
                **image_fields(event, i),
            )
            for i, k in enumerate(render_keys)
        ]
        deliveries = [
            NewDelivery(
                "render_result",
                {
                    **base,
                    "prompt": order.prompt or "",
                    "image_keys": render_keys,
                    "likeness": likeness_payload(event),
                    "mode": order.params.get("mode", "txt2img"),
                },
            )
        ]
        advice = _advice(s, order, event, advice_after)
        if advice is not None:
            deliveries.append(advice)
    elif event.kind == EventKind.DONE:
        kw["status"] = OrderStatus.TRAINED
        deliveries = [
            NewDelivery(
                "train_result",
                {
                    **base,
                    "model_name": order.params.get("name", ""),
                    "image_keys": render_keys,
                    "likeness": likeness_payload(event),
                    "augmented": augmented_payload(event),
                },
            )
        ]
    elif event.kind == EventKind.FAILED:
        message = event.error.message if event.error else "The job failed."
        kw.update(
            status=OrderStatus.FAILED,
            error_code=event.error.code if event.error else "failed",
            error_message=message,
        )
        deliveries = [
            NewDelivery(
                "failed",
                {**base, "message": message, "refunded": order.credits_charged - order.credits_refunded},
            )
        ]
    return kw, images, deliveries
