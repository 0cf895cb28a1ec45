"""Nothing stays stuck: orders whose job was lost (never queued, dead-lettered, gone from the queue) are sent
again once by the bot's reconciler, then failed and refunded with a clear message."""

from __future__ import annotations

import asyncio
import time

from studio import Studio, bot_settings, queued_messages

from bot.backends import Backends, open_backends
from bot.services import reconcile
from cloud.messages import Event, RenderJob, encode, new_id
from storage import Job, keys, lifecycle, order_store, read_session, standing, transaction
from storage.settings import load_settings


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


def _render_job(user_id: int, model_id: str, prompt: str) -> RenderJob:
    return RenderJob(
        job_id=new_id(),
        order_id=new_id(),
        user_id=str(user_id),
        model_keys=[keys.model_key(user_id, model_id)],
        subject="sks woman",
        base_model="tiny-sd",
        prompt=prompt,
        count=1,
        width=64,
        height=64,
        steps=2,
    )


def _commit_unsent_order(
    b: Backends, job: RenderJob, guild_id: int | None, channel_id: int | None, model_id: str
) -> None:
    """What a bot crash between the database commit and the send leaves behind: the order and its job (payload
    included) committed, credits charged, no message on any queue."""
    lifecycle.create_order(
        b.engine,
        order_id=job.order_id,
        job_id=job.job_id,
        user_id=int(job.user_id),
        guild_id=guild_id,
        channel_id=channel_id,
        kind="render",
        cost=1,
        params={"title": f"Imagine: {job.prompt}", "prompt": job.prompt, "count": 1, "seed": 0},
        job=job.model_dump(mode="json"),
        limits=lifecycle.Limits(
            max_concurrent=2, daily_quota=50, starting_credits=b.settings.starting_credits
        ),
        model_id=model_id,
    )


def _credits(st: Studio, member_id: int) -> int:
    with read_session(st.b.engine) as s:
        return standing.credits_of(s, st.guild.id, member_id)


async def test_order_the_bot_never_queued_is_sent_again_then_failed_and_refunded(studio: Studio) -> None:
    st = studio
    await _restart_with(st)
    model_id = st.seed_model(st.alice)
    job = _render_job(st.alice.id, model_id, "lost on the way")
    order_id, job_id = job.order_id, job.job_id
    _commit_unsent_order(st.b, job, st.guild.id, st.channel.id, model_id)
    assert queued_messages(st.b) == 0
    assert _credits(st, st.alice.id) == st.settings.starting_credits - 1

    resent = await asyncio.to_thread(st.agent.take_render, 10.0)  # taken and acked: lost again, no event
    assert resent == job
    # The reconciler notes the re-send right after it: wait for that note.
    await st.sim.wait_until(lambda: lifecycle.get_order(st.b.engine, order_id).status != "created", 5)
    assert lifecycle.get_order(st.b.engine, order_id).status in ("queued", "failed")

    failed = await st.sim.wait_for_message(
        st.channel, lambda m: "Your order failed" in str(m.embeds), timeout=10
    )
    assert "second try" in str(failed.embeds) and "1 credit(s)" in str(failed.embeds)
    assert f"<@{st.alice.id}>" in failed.content
    order = lifecycle.get_order(st.b.engine, order_id)
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


def test_no_order_is_judged_while_the_event_consumer_is_behind(tmp_path) -> None:
    """After the bot was down while agents worked, the news of a quiet order may be waiting in the events queue:
    the reconciler sends nothing again until the consumer caught up. Real order store and queue, no Discord."""
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path}/photogen.db",
        queue_url=f"sqlite:///{tmp_path}/queue.db",
        blob_url=f"file://{tmp_path}/blobs",
        reconcile_stuck_after_s=60,
    )
    b = open_backends(settings)
    try:
        with transaction(b.engine) as s:
            order_store.get_or_create_user(s, 7)
        job = _render_job(7, "m7", "waiting for news")
        _commit_unsent_order(b, job, None, None, "m7")
        later = time.time() + 120
        for _ in range(reconcile.EVENTS_BEHIND):
            news = Event(job_id=new_id(), order_id=new_id(), job_kind="render", kind="progress")
            b.queues.events.send(encode(news))
        assert reconcile.reconcile_once(b, now=later) == []
        assert b.queues.render.depth().backlog == 0
        for lease in b.queues.events.receive(max_messages=10, wait_s=0, lease_s=30):
            b.queues.events.ack(lease)  # the consumer caught up
        assert reconcile.reconcile_once(b, now=later) == [reconcile.Repair(job.order_id, "resent")]
        [lease] = b.queues.render.receive(wait_s=0)
        assert lease.body == encode(job)
    finally:
        b.close()
