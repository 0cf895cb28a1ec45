"""Progress edits and exactly-once delivery through the outbox, across restarts."""

from __future__ import annotations

import asyncio
import io
import os

from PIL import Image
from sqlmodel import select
from studio import Studio, bot_settings

from bot.services import admin, media
from cloud.messages import ImageSafety
from storage import Delivery, keys, lifecycle, read_session


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
    assert st.credits(st.alice) == st.settings.starting_credits
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
    real_mark = lifecycle.mark_outbox_sent

    def crash_before_mark(engine, outbox_id, message_id):
        crashed.set()
        raise SystemError("simulated crash between post and mark-sent")

    lifecycle.mark_outbox_sent = crash_before_mark
    try:
        await asyncio.to_thread(st.agent.finish_render, job)
        await asyncio.wait_for(crashed.wait(), 10)
    finally:
        lifecycle.mark_outbox_sent = real_mark
    posted = [m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids())]
    assert len(posted) == 1
    assert len(lifecycle.pending_outbox(st.b.engine)) == 1  # still pending: the mark never happened

    await st.restart()  # the new instance resends the pending row with the same nonce
    await st.sim.wait_until(lambda: not lifecycle.pending_outbox(st.b.engine), 10)
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


async def test_result_that_cannot_be_built_never_blocks_other_deliveries(studio: Studio) -> None:
    """A render blob that is not a decodable picture makes its row raise (PIL), round after round. The old loop
    aborted the whole round on it, so nobody got results again; now the row is retried up to
    DELIVERY_MAX_ATTEMPTS, given up with a plain notice to its member and an alert to the server's admins, and
    every other row is posted."""
    st = studio
    admin_log = st.sim.add_channel(st.guild, "admin-log")
    st.settings = bot_settings(st.sim, st.tmp, bot_sync_guild_ids=[st.guild.id], delivery_max_attempts=2)
    await st.restart()
    admin.update_guild(st.b, st.guild.id, admin_log_channel_id=admin_log.id)
    st.seed_model(st.alice)
    st.seed_model(st.bob)
    # alice's result is a grid of two pictures (built with PIL: a single picture is attached as it is)
    for member, prompt, count in ((st.alice, "broken", 2), (st.bob, "fine", 1)):
        inter = await st.sim.invoke_command(member, st.channel, "imagine", {"prompt": prompt, "count": count})
        await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    first = await asyncio.to_thread(st.agent.take_render)
    second = await asyncio.to_thread(st.agent.take_render)
    broken, fine = (first, second) if first.user_id == str(st.alice.id) else (second, first)
    bad_keys = [keys.render_key(broken.user_id, broken.job_id, n) for n in range(2)]
    for bad_key in bad_keys:
        st.b.blobs.put(bad_key, b"\x89PNG but then nothing a decoder can read", content_type="image/png")
    # its outbox row is the older one: tried first. The agent's check passed it (a stand-in verdict: the real
    # detector cannot open these bytes either, which is the point: the bot is the first to fail on them).
    passed = [ImageSafety(key=k, flagged=False, checker="stand-in") for k in bad_keys]
    st.agent.emit(broken, "done", output_keys=bad_keys, safety=passed)
    await asyncio.to_thread(st.agent.finish_render, fine)

    result = await st.sim.wait_for_message(
        st.channel, lambda m: "pg:up:" in str(m.custom_ids()) and f"<@{st.bob.id}>" in m.content, timeout=15
    )
    assert "fine" in str(result.embeds)  # the member's words head the result
    notice = await st.sim.wait_for_message(
        st.channel, lambda m: "could not post the result" in m.content, timeout=15
    )
    assert f"<@{st.alice.id}>" in notice.content and broken.order_id in notice.content
    for internal in ("Error", "PIL", "Traceback", "/", "blobs"):
        assert internal not in notice.content.replace(f"<@{st.alice.id}>", ""), internal
    alert = await st.sim.wait_for_message(admin_log, lambda m: "gave up" in m.content, timeout=10)
    assert broken.order_id in alert.content and "2 attempt(s)" in alert.content
    with read_session(st.b.engine) as s:
        rows = {r.kind: r for r in s.exec(select(Delivery).where(Delivery.order_id == broken.order_id))}
    assert rows["render_result"].status == "failed" and rows["render_result"].attempts == 2
    assert rows["render_result"].last_error and "UnidentifiedImageError" in rows["render_result"].last_error
    await st.sim.wait_until(
        lambda: not lifecycle.pending_outbox(st.b.engine), 5
    )  # the notice was posted, then marked
    # Given up means given up: no further attempts, no second notice, nothing of alice's posted as a result.
    await asyncio.sleep(0.6)
    assert len([m for m in st.sim.messages(st.channel) if "could not post the result" in m.content]) == 1
    assert not [
        m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids()) and "broken" in m.content
    ]
    with read_session(st.b.engine) as s:
        assert s.get(Delivery, rows["render_result"].id).attempts == 2


async def test_forged_events_naming_another_members_blobs_post_nothing(studio: Studio) -> None:
    """Events are checked against their order: a progress event whose preview is another member's training
    photo, a done event whose outputs are someone else's blobs, and an event with another order's job id are
    dropped (counted) — nothing of theirs is stored on the order or posted."""
    from agent_part import picture

    from cloud.messages import Event, Progress, encode

    st = studio
    st.seed_model(st.alice)
    st.seed_model(st.bob)
    bob_photo_key = keys.photo_key(st.bob.id, "bobsorder", 0)
    bob_photo = picture(77, (96, 96))
    st.b.blobs.put(bob_photo_key, bob_photo, content_type="image/jpeg")
    inter = await st.sim.invoke_command(st.bob, st.channel, "imagine", {"prompt": "bob's", "count": 1})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    bobs_job = await asyncio.to_thread(st.agent.take_render)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "mine", "count": 1})
    status = await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    assert job.user_id == str(st.alice.id)
    st.agent.emit(job, "started")

    def forged(**fields: object) -> None:
        base = {"job_id": job.job_id, "order_id": job.order_id, "job_kind": "render", "agent_id": "forger"}
        st.b.queues.events.send(encode(Event(**{**base, **fields})))  # type: ignore[arg-type]

    forged(kind="progress", progress=Progress(step=1, total=2, preview_key=bob_photo_key))
    st.agent.progress(job, 2, 2)  # the real agent's next progress, without a preview
    edited = await st.sim.wait_for_message(
        st.channel, lambda m: m.id == status.id and "step 2/2" in str(m.embeds)
    )
    assert "preview.jpg" not in edited.files
    forged(kind="done", output_keys=[bob_photo_key])
    forged(kind="done", job_id=bobs_job.job_id, output_keys=[keys.render_key(job.user_id, job.job_id, 0)])
    await st.sim.wait_until(lambda: not st.b.queues.events.depth().backlog, 5)
    await asyncio.sleep(0.3)
    leaked = [m for m in st.sim.messages(st.channel) if any(d == bob_photo for d in m.files.values())]
    assert leaked == []
    view = lifecycle.get_order(st.b.engine, job.order_id)
    assert view is not None and view.preview_key is None and view.status == "rendering"
    assert not [m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids())]
    # The real done event still delivers.
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(st.channel, lambda m: "pg:up:" in str(m.custom_ids()), timeout=10)
    assert f"<@{st.alice.id}>" in result.content and list(result.files) == ["1.png"]  # one picture: no grid


async def test_post_that_reached_discord_is_never_given_up(studio: Studio) -> None:
    """A failure after Discord accepted the post (marking the row sent) must not count towards
    DELIVERY_MAX_ATTEMPTS: the member would be told their result failed while it is in the channel."""
    st = studio
    st.settings = bot_settings(st.sim, st.tmp, bot_sync_guild_ids=[st.guild.id], delivery_max_attempts=1)
    await st.restart()
    st.seed_model(st.alice)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "once"})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    # The same stand-in as above: the mark step fails once (a database hiccup right after the post).
    failed_once = asyncio.Event()
    real_mark = lifecycle.mark_outbox_sent

    def fail_first_mark(engine, outbox_id, message_id):
        if not failed_once.is_set():
            failed_once.set()
            raise SystemError("simulated database hiccup after the post")
        return real_mark(engine, outbox_id, message_id)

    lifecycle.mark_outbox_sent = fail_first_mark
    try:
        await asyncio.to_thread(st.agent.finish_render, job)
        await asyncio.wait_for(failed_once.wait(), 10)
        await st.sim.wait_until(
            lambda: not lifecycle.pending_outbox(st.b.engine), 15
        )  # the next sweep marks it
    finally:
        lifecycle.mark_outbox_sent = real_mark
    posted = [m for m in st.sim.messages(st.channel) if "pg:up:" in str(m.custom_ids())]
    assert len(posted) == 1
    assert not [m for m in st.sim.messages(st.channel) if "could not post the result" in m.content]
    with read_session(st.b.engine) as s:
        [row] = list(s.exec(select(Delivery)))
    assert row.status == "sent" and row.discord_message_id == str(posted[0].id)


async def test_the_model_is_the_file_the_done_event_names(studio: Studio) -> None:
    """Typed outputs: the bot takes the LoRA the agent names in ``model_key`` (a key of any name) and posts the
    pictures of ``render_keys``; it never guesses from what the keys look like."""
    from bot.checks import GuildRules
    from bot.services import member_orders as order_svc

    st = studio
    placed = await asyncio.to_thread(
        order_svc.place_train_order,
        st.b,
        guild_id=st.guild.id,
        channel_id=st.channel.id,
        user_id=st.alice.id,
        name="typed",
        class_word="woman",
        crops=[b"a", b"b"],
        rules=GuildRules(guild_id=st.guild.id),
    )
    job = await asyncio.to_thread(st.agent.take_train)
    assert job.order_id == placed.order_id
    lora = f"{keys.model_prefix(st.alice.id, job.model_id)}lora-v2.safetensors"
    st.b.blobs.put(lora, b"weights")
    st.agent.emit(job, "done", output_keys=[lora], model_key=lora, render_keys=[])

    def ready() -> bool:
        return any(m.status == "ready" for m in lifecycle.list_models(st.b.engine, st.alice.id))

    await st.sim.wait_until(ready, 10)
    (model,) = lifecycle.list_models(st.b.engine, st.alice.id)
    assert model.id == job.model_id and model.lora_key == lora
    assert lifecycle.get_order(st.b.engine, placed.order_id).status == "delivered"
