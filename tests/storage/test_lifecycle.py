"""storage.lifecycle alone carries an order through its life: no bot, no Discord — the real order store and
the real queue message types (cloud.messages.Event satisfies lifecycle.AgentEvent)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from cloud.messages import ErrorInfo, Event, LikenessScore, Progress, RenderJob
from storage import keys, lifecycle, read_session, standing, transaction
from storage.contracts import JobKind, OrderStatus

LIMITS = lifecycle.Limits(max_concurrent=2, daily_quota=10, starting_credits=5)


def _render(engine: Engine, *, user: int = 7, order_id: str = "o1", cost: int = 2) -> RenderJob:
    job = RenderJob(
        job_id=f"j-{order_id}",
        order_id=order_id,
        user_id=str(user),
        model_id="m1",
        base_model="tiny-sd",
        prompt="a photo of {subject}",
        count=2,
    )
    lifecycle.create_order(
        engine,
        order_id=order_id,
        job_id=job.job_id,
        user_id=user,
        guild_id=1,
        channel_id=2,
        kind=JobKind.RENDER,
        cost=cost,
        params={"title": "t", "prompt": job.prompt, "seed": 4},
        job=job.model_dump(mode="json"),
        limits=LIMITS,
    )
    return job


def _event(job: RenderJob, kind: str, **fields: object) -> Event:
    return Event(job_id=job.job_id, order_id=job.order_id, job_kind="render", kind=kind, **fields)  # type: ignore[arg-type]


def test_a_render_order_from_creation_to_its_delivered_pictures(engine: Engine) -> None:
    job = _render(engine)
    with read_session(engine) as s:
        assert standing.credits_of(s, 1, 7) == LIMITS.starting_credits - 2  # starting credits, then charged
    assert lifecycle.get_order(engine, "o1").status is OrderStatus.CREATED
    assert lifecycle.mark_queued(engine, "o1")
    assert lifecycle.queue_position(engine, "o1") == (1, None)
    started = lifecycle.apply_event(
        engine, _event(job, "started", progress=Progress(step=0, total=4)), price_per_hour=0.0, advice_after=3
    )
    assert not started.final and lifecycle.get_order(engine, "o1").status == OrderStatus.RENDERING
    pictures = [keys.render_key(7, job.job_id, n) for n in range(2)]
    done = _event(
        job,
        "done",
        output_keys=pictures,
        render_keys=pictures,
        gpu_seconds=3.0,
        likeness=[LikenessScore(verdict="strong", score=0.8), LikenessScore(verdict="fair", score=0.6)],
    )
    applied = lifecycle.apply_event(engine, done, price_per_hour=3.6, advice_after=3)
    assert applied.final and applied.outbox and not applied.duplicate
    assert lifecycle.get_order(engine, "o1").status == OrderStatus.DELIVERED
    assert lifecycle.image_keys(engine, "o1") == pictures
    (post,) = lifecycle.pending_outbox(engine)
    assert post.kind == "render_result" and post.payload["image_keys"] == pictures
    assert [s["verdict"] for s in post.payload["likeness"]] == ["strong", "fair"]
    # The same event again: nothing changes, nothing is posted twice.
    again = lifecycle.apply_event(engine, done, price_per_hour=3.6, advice_after=3)
    assert again.duplicate and len(lifecycle.pending_outbox(engine)) == 1
    lifecycle.claim_outbox(engine, post.id)
    assert lifecycle.mark_outbox_sent(engine, post.id, 12345)
    assert lifecycle.pending_outbox(engine) == []
    # A cancel after delivery is refused (None): the pictures were made.
    assert lifecycle.cancel_order(engine, "o1", by="7") is None


def test_a_failed_job_refunds_once_and_tells_the_member(engine: Engine) -> None:
    job = _render(engine)
    failed = _event(job, "failed", error=ErrorInfo(code="oom", message="The GPU ran out of memory."))
    applied = lifecycle.apply_event(engine, failed, price_per_hour=1.0, advice_after=3)
    assert applied.final and applied.outbox
    view = lifecycle.get_order(engine, "o1")
    assert view.status == OrderStatus.FAILED and view.error_message == "The GPU ran out of memory."
    (post,) = lifecycle.pending_outbox(engine)
    assert post.kind == "failed" and post.payload["refunded"] == 2
    with read_session(engine) as s:
        assert standing.credits_of(s, 1, 7) == LIMITS.starting_credits
    assert lifecycle.fail_order(engine, "o1", "again", "x") is None  # final: no second refund


def test_an_event_naming_another_members_files_changes_nothing(engine: Engine) -> None:
    job = _render(engine)
    stolen = keys.photo_key(8, "their-order", 0)
    applied = lifecycle.apply_event(
        engine,
        _event(job, "done", output_keys=[stolen], render_keys=[stolen]),
        price_per_hour=0.0,
        advice_after=3,
    )
    assert applied.forged is not None and "outside the owner's prefix" in applied.forged
    assert applied.order_id is None and not applied.outbox
    assert lifecycle.get_order(engine, "o1").status == OrderStatus.CREATED
    assert lifecycle.pending_outbox(engine) == []


def test_limits_are_refused_whole_with_a_message_for_the_member(engine: Engine) -> None:
    _render(engine, order_id="o1")
    _render(engine, order_id="o2", cost=1)
    with pytest.raises(lifecycle.LimitReached, match="already have 2 order") as err:
        _render(engine, order_id="o3", cost=1)
    assert not err.value.banned and lifecycle.get_order(engine, "o3") is None  # nothing half-written
    with transaction(engine) as s:
        standing.set_ban(s, 1, 9, True, "spam")
    with pytest.raises(lifecycle.LimitReached) as err:
        lifecycle.precheck_order(engine, 1, 9, LIMITS, 1)
    assert err.value.banned


def test_cancel_refunds_and_forgetting_removes_every_row(engine: Engine) -> None:
    _render(engine)
    assert lifecycle.cancel_order(engine, "o1", by="7") == 2
    assert lifecycle.get_order(engine, "o1").status == OrderStatus.CANCELLED
    assert lifecycle.list_orders(engine, 7, active_only=True) == []
    receipt = lifecycle.forget_member(engine, 7)
    assert receipt["orders"] == 1 and lifecycle.list_orders(engine, 7) == []
