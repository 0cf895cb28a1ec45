"""Progress edits and exactly-once delivery through the outbox, across restarts."""

from __future__ import annotations

import asyncio
import io
import os

from studio import Studio
from PIL import Image
from sqlmodel import select

from bot.services import delivery as svc
from bot.services import media, store
from storage import Delivery, keys, orders, read_session


async def test_progress_edits_and_failure_refund(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "x", "count": 2})
    status = await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    st.agent.emit(job, "started")
    st.agent.progress(job, 1, 2, preview=True)
    edited = await st.sim.wait_for_message(
        st.channel, lambda m: m.id == status.id and "step 1/2" in str(m.embeds)
    )
    assert "preview.jpg" in edited.files
    st.agent.fail(job, "The GPU ran out of memory.")
    failed = await st.sim.wait_for_message(st.channel, lambda m: "Your order failed" in str(m.embeds))
    assert "ran out of memory" in str(failed.embeds) and "2 credit(s)" in str(failed.embeds)
    with read_session(st.b.engine) as s:
        assert orders.get_user(s, st.alice.id).credits == st.settings.starting_credits
    # A redelivered event changes nothing and posts nothing.
    st.agent.fail(job)  # a new event id, but the order is final: no second post
    await asyncio.sleep(0.6)
    assert len([m for m in st.sim.messages(st.channel) if "Your order failed" in str(m.embeds)]) == 1


async def test_restart_between_post_and_mark_sent_does_not_double_post(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "once"})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)

    # Crash right after Discord accepted the post, before the outbox row is marked sent. A process crash at
    # exactly that instant cannot be produced from outside, so the mark step raises instead (the only stand-in
    # in this file); everything else — the post, the sim, the restart — is real.
    crashed = asyncio.Event()
    real_mark = svc.mark_outbox_sent

    def crash_before_mark(b, outbox_id, message_id):
        crashed.set()
        raise SystemError("simulated crash between post and mark-sent")

    svc.mark_outbox_sent = crash_before_mark
    try:
        await asyncio.to_thread(st.agent.finish_render, job)
        await asyncio.wait_for(crashed.wait(), 10)
    finally:
        svc.mark_outbox_sent = real_mark
    posted = [m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids())]
    assert len(posted) == 1
    assert len(store.pending_outbox(st.b)) == 1  # still pending: the mark never happened

    await st.restart()  # the new instance resends the pending row with the same nonce
    await st.sim.wait_until(lambda: not store.pending_outbox(st.b), 10)
    posted = [m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids())]
    assert len(posted) == 1, "the resend must reuse the nonce and get the first message back"
    with read_session(st.b.engine) as s:
        rows = list(s.exec(select(Delivery)))
    assert rows[0].status == "sent" and rows[0].discord_message_id == str(posted[0].id)


async def test_rate_limited_post_arrives_once_and_big_pictures_fit(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "big", "count": 1})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    # Discord answers the result post with a 429 once; discord.py waits retry_after and posts again.
    st.sim.set_rate_limit("/channels/*/messages", retry_after=0.2, times=1, method="POST")
    # A 2,200 × 2,200 noise PNG is ~14 MiB: over the 10 MiB attachment limit, so it must be re-encoded.
    noise = Image.frombytes("RGB", (2200, 2200), os.urandom(2200 * 2200 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG", compress_level=1)
    assert out.tell() > media.DEFAULT_ATTACHMENT_LIMIT
    st.b.blobs.put(keys.render_key(job.user_id, job.job_id, 0), out.getvalue())
    st.agent.emit(job, "done", output_keys=[keys.render_key(job.user_id, job.job_id, 0)])
    result = await st.sim.wait_for_message(st.channel, lambda m: "pg:up:" in str(m.custom_ids()), timeout=15)
    assert set(result.files) == {"1.jpg"}  # one picture: itself, re-encoded to fit, no grid
    assert all(len(data) <= media.DEFAULT_ATTACHMENT_LIMIT for data in result.files.values())
    assert any(r.status == 429 for r in st.sim.requests)
    await asyncio.sleep(0.5)
    assert len([m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids())]) == 1


def test_picture_that_cannot_fit_becomes_a_link() -> None:
    noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG")
    assert media.fit_attachment(out.getvalue(), "1.png", limit=out.tell()) == ("1.png", out.getvalue())
    assert media.fit_attachment(out.getvalue(), "1.png", limit=1000) is None
