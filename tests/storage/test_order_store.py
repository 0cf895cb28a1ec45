"""The order store on a real SQLite file: forward-only order life, idempotent events, outbox, credits, queries."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from storage import (
    AppliedEvent,
    CreditEntry,
    Delivery,
    InsufficientCredits,
    NewDelivery,
    NewImage,
    Order,
    OrderStoreError,
    UnknownOrder,
    credits,
    order_store,
    read_session,
    standing,
    transaction,
)


def _order(
    engine: Engine, *, kind: str = "render", user: object = 7, charge: int = 0, credits: int = 10
) -> str:
    with transaction(engine) as s:
        return order_store.create_order(
            s, user_id=user, kind=kind, charge=charge, starting_credits=credits
        ).id


def _status(engine: Engine, order_id: str) -> str:
    with read_session(engine) as s:
        order = order_store.get_order(s, order_id)
    assert order is not None
    return order.status  # rows stay readable after the session closes


def test_train_order_walks_the_whole_flow_forward(engine: Engine) -> None:
    oid = _order(engine, kind="train")
    steps = [
        order_store.mark_queued,
        order_store.mark_training,
        order_store.mark_trained,
        order_store.mark_rendering,
        order_store.mark_delivered,
    ]
    for step in steps:
        with transaction(engine) as s:
            assert step(s, oid) is True
    assert _status(engine, oid) == "delivered"


def test_backward_and_repeated_transitions_are_noops(engine: Engine) -> None:
    oid = _order(engine, kind="train")
    with transaction(engine) as s:
        assert order_store.mark_training(s, oid)  # skipping ahead over a lost 'queued' is allowed
        assert order_store.mark_queued(s, oid) is False  # a late 'queued' never moves it back
        assert order_store.mark_training(s, oid) is False  # the same state again
    assert _status(engine, oid) == "training"


def test_render_order_never_enters_training(engine: Engine) -> None:
    oid = _order(engine, kind="render")
    with transaction(engine) as s:
        assert order_store.mark_training(s, oid) is False
        assert order_store.mark_trained(s, oid) is False
        assert order_store.mark_rendering(s, oid) is True
    assert _status(engine, oid) == "rendering"


@pytest.mark.parametrize("final", ["delivered", "failed", "cancelled"])
def test_final_states_are_final(engine: Engine, final: str) -> None:
    oid = _order(engine, kind="train")
    with transaction(engine) as s:
        assert order_store.transition(s, oid, final, error_code="x", error_message="y")
    with transaction(engine) as s:
        for to in (
            "created",
            "queued",
            "training",
            "trained",
            "rendering",
            "delivered",
            "failed",
            "cancelled",
        ):
            assert order_store.transition(s, oid, to) is False, f"{final} -> {to} must be refused"
    assert _status(engine, oid) == final


def test_unknown_status_and_unknown_order(engine: Engine) -> None:
    oid = _order(engine)
    with transaction(engine) as s:
        assert order_store.transition(s, oid, "exploded") is False
    with pytest.raises(UnknownOrder, match="no order 'nope'"), transaction(engine) as s:
        order_store.mark_queued(s, "nope")
    with pytest.raises(OrderStoreError, match="kind"), transaction(engine) as s:
        order_store.create_order(s, user_id=1, kind="upscale")


def test_failed_keeps_user_safe_error(engine: Engine) -> None:
    oid = _order(engine)
    with transaction(engine) as s:
        assert order_store.mark_failed(
            s, oid, "oom", "The GPU ran out of memory; your credits were refunded."
        )
    with read_session(engine) as s:
        order = order_store.get_order(s, oid)
        assert order is not None
        assert (order.error_code, order.status) == ("oom", "failed")


def test_event_applied_twice_changes_nothing(engine: Engine) -> None:
    oid = _order(engine, charge=0)
    with transaction(engine) as s:
        order_store.mark_queued(s, oid)
        order_store.mark_rendering(s, oid)

    def deliver() -> order_store.EventOutcome:
        with transaction(engine) as s:
            return order_store.apply_event(
                s,
                "ev-done-1",
                oid,
                status="delivered",
                images=[NewImage(blob_key="users/7/renders/j/0.png", index=0, job_id="j", seed=5)],
                deliveries=[NewDelivery("render_result", {"keys": ["users/7/renders/j/0.png"]})],
            )

    first, second = deliver(), deliver()
    assert (first.applied, first.moved, first.status) == (True, True, "delivered")
    assert (second.applied, second.moved, second.status) == (False, False, "delivered")
    with read_session(engine) as s:
        assert len(order_store.pending_deliveries(s)) == 1
        assert len(order_store.images_of_order(s, oid)) == 1
        assert s.exec(select(func.count()).select_from(AppliedEvent)).one() == 1


def test_stale_event_records_id_but_posts_nothing(engine: Engine) -> None:
    oid = _order(engine)
    with transaction(engine) as s:
        order_store.mark_failed(s, oid, "x", "y")
    with transaction(engine) as s:
        out = order_store.apply_event(
            s, "late-done", oid, status="delivered", deliveries=[NewDelivery("k", {})]
        )
    assert (out.applied, out.moved, out.status) == (True, False, "failed")
    with read_session(engine) as s:
        assert order_store.pending_deliveries(s) == []


def test_event_and_state_change_roll_back_together(engine: Engine) -> None:
    oid = _order(engine)
    with pytest.raises(RuntimeError), transaction(engine) as s:
        order_store.apply_event(s, "ev-crash", oid, status="rendering")
        raise RuntimeError("the bot died before commit")
    # Neither the event id nor the move survived, so the redelivered event applies in full.
    assert _status(engine, oid) == "created"
    with transaction(engine) as s:
        assert order_store.apply_event(s, "ev-crash", oid, status="rendering").moved is True


def test_progress_ignores_stale_steps(engine: Engine) -> None:
    oid = _order(engine, kind="train")
    with transaction(engine) as s:
        order_store.mark_training(s, oid)
        assert order_store.record_progress(
            s, oid, step=50, total=100, eta_s=30, preview_key="previews/j/50.jpg"
        )
        assert order_store.record_progress(s, oid, step=20, total=100) is False
        assert order_store.record_progress(s, oid, step=1, total=4)  # a new phase (the first renders)
    with read_session(engine) as s:
        order = order_store.get_order(s, oid)
        assert order is not None
        assert (order.progress_step, order.progress_total, order.preview_key) == (1, 4, "previews/j/50.jpg")


def test_failure_event_refunds_once(engine: Engine) -> None:
    oid = _order(engine, charge=3, credits=10)
    with read_session(engine) as s:
        assert standing.credits_of(s, None, 7) == 7
    for event_id in ("ev-fail", "ev-fail", "ev-fail-again"):
        with transaction(engine) as s:
            order_store.apply_event(
                s, event_id, oid, status="failed", error_code="oom", error_message="out of memory"
            )
    with transaction(engine) as s:
        assert order_store.refund_order(s, oid) == 0
    with read_session(engine) as s:
        assert standing.credits_of(s, None, 7) == 10


def test_credits_never_go_negative(engine: Engine) -> None:
    with transaction(engine) as s:
        credits.grant_starting(s, None, 1, 2)
    with pytest.raises(InsufficientCredits) as err, transaction(engine) as s:
        order_store.create_order(s, user_id=1, kind="train", charge=5)
    assert (err.value.needed, err.value.available) == (5, 2)
    with read_session(engine) as s:
        assert standing.credits_of(s, None, 1) == 2
        assert order_store.orders_of_user(s, 1) == []  # the refused order left nothing behind
        assert [e.kind for e in s.exec(select(CreditEntry))] == ["starting"]  # nor an entry
    with pytest.raises(OrderStoreError, match="non-negative"), transaction(engine) as s:
        credits.grant(s, None, 1, -5, actor=9)
    with transaction(engine) as s:
        order = order_store.create_order(s, user_id=1, kind="render", charge=2)
        assert standing.credits_of(s, None, 1) == 0
        with pytest.raises(OrderStoreError, match="charged already"):
            credits.charge(s, order, 1)  # one charge per order


def test_outbox_mark_sent_once(engine: Engine) -> None:
    oid = _order(engine)
    with transaction(engine) as s:
        delivery_id = order_store.add_delivery(s, oid, "render_result", {"n": 1}).id
        assert order_store.record_delivery_failure(s, delivery_id, "HTTP 503") == 1
    with transaction(engine) as s:
        assert order_store.mark_sent(s, delivery_id, 123456789012345678) is True
        assert order_store.mark_sent(s, delivery_id, 999) is False
    with read_session(engine) as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        assert (row.status, row.discord_message_id, row.attempts) == ("sent", "123456789012345678", 1)
        assert order_store.pending_deliveries(s) == []


def test_queries_position_counts_and_models(engine: Engine) -> None:
    first, second, third = (_order(engine, kind="train", user=u) for u in (1, 2, 1))
    other_kind = _order(engine, kind="render", user=2)
    with transaction(engine) as s:
        for oid in (first, second, third, other_kind):
            order_store.mark_queued(s, oid)
    with read_session(engine) as s:
        assert [order_store.queue_position(s, o) for o in (first, second, third, other_kind)] == [1, 2, 3, 1]
        assert order_store.active_order_count(s, 1) == 2
        assert order_store.order_count_since(s, 1, 0) == 2
        assert [o.id for o in order_store.orders_of_user(s, 1)] == [third, first]
    with transaction(engine) as s:
        order_store.mark_training(s, first)
        order_store.mark_cancelled(s, second, "changed my mind")
        model = order_store.add_model(
            s,
            user_id=1,
            name="me",
            class_word="person",
            subject_token="sks",
            base_model="tiny-sd",
            order_id=first,
        )
        assert order_store.mark_model_ready(s, model.id, "users/1/models/m/lora.safetensors")
        assert order_store.mark_model_failed(s, model.id) is False
    with read_session(engine) as s:
        assert [order_store.queue_position(s, o) for o in (first, second, third)] == [0, None, 1]
        assert order_store.active_order_count(s, 1) == 2 and order_store.active_order_count(s, 2) == 1
        assert [m.status for m in order_store.models_of_user(s, 1, ready_only=True)] == ["ready"]


def test_delete_user_data_returns_receipt_and_keeps_standing(engine: Engine) -> None:
    oid = _order(engine, kind="train", user=5)
    keep = _order(engine, kind="render", user=6)
    with transaction(engine) as s:
        order_store.add_job(s, oid, "train", {"job": 1})
        order_store.add_model(
            s, user_id=5, name="me", class_word="person", subject_token="sks", base_model="tiny-sd"
        )
        order_store.apply_event(s, "e1", oid, status="training")
        order_store.add_image(s, oid, NewImage(blob_key="users/5/renders/j/0.png", index=0))
        order_store.add_delivery(s, oid, "train_result", {})
        order_store.audit(s, guild_id=1, actor_id=9, action="ban", target=5, detail="spam")
    with transaction(engine) as s:
        receipt = order_store.delete_user_data(s, 5)
    assert (
        receipt.orders,
        receipt.jobs,
        receipt.images,
        receipt.models,
        receipt.deliveries,
        receipt.events,
        receipt.user,
    ) == (1, 1, 1, 1, 1, 1, 1)
    with read_session(engine) as s:
        assert order_store.get_user(s, 5) is None
        assert [o.id for o in s.exec(select(Order))] == [keep]
        assert len(order_store.audit_entries(s, 1)) == 1

    with transaction(engine) as s:
        standing.set_ban(s, 1, 6, True, "abuse")
        receipt = order_store.delete_user_data(s, 6)
    assert receipt.orders == 1 and receipt.user == 1
    with read_session(engine) as s:
        assert order_store.get_user(s, 6) is None
        # The standing (no personal data) stays: the ban and the credits left, never a fresh start.
        assert standing.ban_reason(s, 1, 6) == "abuse"
        assert standing.credits_of(s, None, 6) == 10


def test_guild_settings_defaults_and_updates(engine: Engine) -> None:
    with read_session(engine) as s:
        assert order_store.get_guild_settings(s, 99).paused is False
    with transaction(engine) as s:
        order_store.update_guild_settings(
            s, 99, paused=True, blocked_words=["gore"], allowed_channel_ids=[123], admin_role_id=77
        )
    with read_session(engine) as s:
        g = order_store.get_guild_settings(s, 99)
        assert (g.paused, g.blocked_words, g.allowed_channel_ids, g.admin_role_id) == (
            True,
            ["gore"],
            ["123"],
            "77",
        )
    with pytest.raises(OrderStoreError, match="unknown guild setting"), transaction(engine) as s:
        order_store.update_guild_settings(s, 99, owner="me")
