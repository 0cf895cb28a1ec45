"""Nothing stays stuck: orders whose job was lost (never queued, dead-lettered, gone from the queue) are sent
again once by the bot's reconciler, then failed and refunded with a clear message."""

from __future__ import annotations

import asyncio

from studio import Studio, bot_settings, queued_messages

from bot.services import store
from cloud.messages import RenderJob, encode, new_id
from storage import Job, keys, orders, read_session


async def _restart_with(st: Studio, **overrides: object) -> None:
    st.settings = bot_settings(
        st.sim,
        st.tmp,
        bot_sync_guild_ids=[st.guild.id],
        reconcile_interval_s=0.1,
        reconcile_stuck_after_s=0.5,
        **overrides,
    )
    await st.restart()


def _credits(st: Studio, member_id: int) -> int:
    with read_session(st.b.engine) as s:
        return orders.get_user(s, member_id).credits


async def test_order_the_bot_never_queued_is_sent_again_then_failed_and_refunded(studio: Studio) -> None:
    st = studio
    await _restart_with(st)
    model_id = st.seed_model(st.alice)
    order_id, job_id = new_id(), new_id()
    job = RenderJob(
        job_id=job_id,
        order_id=order_id,
        user_id=str(st.alice.id),
        model_keys=[keys.model_key(st.alice.id, model_id)],
        subject="sks woman",
        base_model="tiny-sd",
        prompt="lost on the way",
        count=1,
        width=64,
        height=64,
        steps=2,
    )
    # What a bot crash between the database commit and the send leaves behind: the order and its job (payload
    # included) committed, credits charged, no message on any queue.
    store.create_order(
        st.b,
        order_id=order_id,
        job_id=job_id,
        user_id=st.alice.id,
        guild_id=st.guild.id,
        channel_id=st.channel.id,
        kind="render",
        cost=1,
        params={"title": "Imagine: lost on the way", "prompt": "lost on the way", "count": 1, "seed": 0},
        payload=encode(job),
        limits=store.Limits(max_concurrent=2, daily_quota=50, starting_credits=st.settings.starting_credits),
        model_id=model_id,
    )
    assert queued_messages(st.b) == 0
    assert _credits(st, st.alice.id) == st.settings.starting_credits - 1

    resent = await asyncio.to_thread(st.agent.take_render, 10.0)  # taken and acked: lost again, no event
    assert resent == job
    # The reconciler notes the re-send right after it: wait for that note.
    await st.sim.wait_until(lambda: store.get_order(st.b, order_id).status != "created", 5)
    assert store.get_order(st.b, order_id).status in ("queued", "failed")

    failed = await st.sim.wait_for_message(
        st.channel, lambda m: "Your order failed" in str(m.embeds), timeout=10
    )
    assert "second try" in str(failed.embeds) and "1 credit(s)" in str(failed.embeds)
    assert f"<@{st.alice.id}>" in failed.content
    order = store.get_order(st.b, order_id)
    assert order.status == "failed" and order.error_message and "refunded" in order.error_message
    assert _credits(st, st.alice.id) == st.settings.starting_credits
    with read_session(st.b.engine) as s:
        assert s.get(Job, job_id).attempt == 2
    await asyncio.sleep(1.0)  # failed is final: nothing is sent again, nothing posted twice
    assert queued_messages(st.b) == 0
    assert len([m for m in st.sim.messages(st.channel) if "Your order failed" in str(m.embeds)]) == 1


async def test_dead_lettered_job_is_redriven_once_then_the_order_is_failed_and_refunded(
    studio: Studio,
) -> None:
    st = studio
    await _restart_with(st, queue_max_receives=1)
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "doomed", "count": 2})
    status = await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    render = st.b.queues.render

    def agent_dies_on_it() -> str:
        [lease] = render.receive(wait_s=10, lease_s=30)
        render.release(lease)  # the agent died holding it: no event, the message comes back
        assert render.receive(wait_s=0) == []  # over QUEUE_MAX_RECEIVES: dead-lettered, without any event
        assert render.dead_letter_depth() == 1
        return lease.body

    first = await asyncio.to_thread(agent_dies_on_it)
    second = await asyncio.to_thread(agent_dies_on_it)  # the reconciler redrove it: delivered once more
    assert second == first
    failed = await st.sim.wait_for_message(
        st.channel, lambda m: "Your order failed" in str(m.embeds), timeout=10
    )
    assert "2 credit(s)" in str(failed.embeds)
    assert _credits(st, st.alice.id) == st.settings.starting_credits
    await st.sim.wait_for_message(
        st.channel, lambda m: m.id == status.id and "failed" in str(m.embeds).lower()
    )
    assert render.dead_letter_depth() == 1  # left for the admins to inspect
    assert render.depth().backlog == 0
