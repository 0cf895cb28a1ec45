"""/imagine → RenderJob → the agent's events → one result message with persistent buttons that keep working
after a bot restart; ownership of every button; @everyone in a prompt pings no one."""

from __future__ import annotations

import asyncio

from studio import Studio, order_rows, private_answer

from cloud.messages import RenderJob


def _result(message) -> bool:
    return any(cid.startswith("pg:up:") for cid in message.custom_ids())


async def _imagine(st: Studio, member, prompt: str, **options) -> RenderJob:
    inter = await st.sim.invoke_command(member, st.channel, "imagine", {"prompt": prompt, **options})
    response = await inter.wait_response()
    assert response.deferred
    status = await inter.wait_original(lambda m: bool(m.embeds) and not m.loading)
    assert "queued" in str(status.embeds[0]).lower(), status.embeds
    return await asyncio.to_thread(st.agent.take_render)


async def test_imagine_results_buttons_after_restart(studio: Studio) -> None:
    st = studio
    model_id = st.seed_model(st.alice)
    job = await _imagine(st, st.alice, "at the beach @everyone <@&1>", count=2, seed=7)
    assert job.count == 2 and job.seed == 7 and job.mode == "txt2img"
    assert job.model_id == model_id  # render jobs name their model: the agent never reads it off a key
    assert job.model_keys == [f"users/{st.alice.id}/models/m{st.alice.id}/lora.safetensors"]
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(st.channel, _result, timeout=10)
    assert set(result.files) == {"grid.jpg"}  # one grid; the singles on request (test_results.py)
    oid = job.order_id
    assert {f"pg:up:{oid}:0", f"pg:var:{oid}:1", f"pg:rr:{oid}:0", f"pg:del:{oid}:0"} <= set(
        result.custom_ids()
    )
    # The prompt is echoed, but nothing in it may ping: only the owner is allowed as a mention.
    assert (
        "@\u200beveryone" in result.embeds[0]["title"]
    )  # escaped, as Discord shows it, and allowed_mentions besides
    am = result.allowed_mentions or {}
    assert am.get("parse") == [] and [int(u) for u in am.get("users", [])] == [st.alice.id], am
    for m in st.sim.messages(st.channel):
        if m.author.id == st.sim.bot_user.id:
            assert "everyone" not in ((m.allowed_mentions or {}).get("parse") or []), m.allowed_mentions

    # A new bot instance on the same database: the buttons still work (their custom_id carries the ids).
    await st.restart()
    click = await st.sim.click(st.alice, result, f"pg:up:{job.order_id}:1")
    await click.wait_response()
    upscale = await asyncio.to_thread(st.agent.take_render)
    assert (
        upscale.mode == "upscale" and upscale.source_key == f"users/{st.alice.id}/renders/{job.job_id}/1.png"
    )
    assert (upscale.width, upscale.height) == (job.width * 2, job.height * 2)
    assert upscale.model_id == model_id

    click = await st.sim.click(st.alice, result, f"pg:var:{job.order_id}:0")
    await click.wait_response()
    variation = await asyncio.to_thread(st.agent.take_render)
    assert variation.mode == "variation" and variation.source_key.endswith("/0.png")

    # Another member can neither re-roll nor delete Alice's pictures.
    for cid in (f"pg:rr:{job.order_id}:0", f"pg:del:{job.order_id}:0"):
        click = await st.sim.click(st.bob, result, cid)
        response = await click.wait_response()
        assert response.ephemeral and "belong" in str(response.embeds).lower()
    assert st.b.queues.render.depth().backlog == 0
    assert st.b.blobs.exists(job.source_key or f"users/{st.alice.id}/renders/{job.job_id}/0.png")

    click = await st.sim.click(st.alice, result, f"pg:del:{job.order_id}:0")
    response = await click.wait_response()
    assert response.ephemeral and "deleted 2" in response.content.lower()
    await st.sim.wait_until(lambda: st.sim.all_messages[result.id].deleted, 5)
    assert list(st.b.blobs.list(f"users/{st.alice.id}/renders/{job.job_id}/")) == []


async def test_imagine_refusals(studio: Studio) -> None:
    st = studio
    # No model yet.
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "hello"})
    msg = await private_answer(inter)
    assert "no trained model" in str(msg.embeds).lower()
    # Someone else's model id is not offered by autocomplete, and refused when typed.
    bob_model = st.seed_model(st.bob, "bob's")
    st.seed_model(st.alice, "alice's")
    choices = await st.sim.autocomplete(
        st.alice, st.channel, "imagine", {"prompt": "x", "model": ""}, "model"
    )
    assert [c["value"] for c in choices] == [f"m{st.alice.id}"]
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "imagine", {"prompt": "hello", "model": bob_model}
    )
    msg = await private_answer(inter)
    assert "not one of your" in str(msg.embeds).lower()
    # Blocked words are checked before anything is queued or charged.
    admin = await st.sim.invoke_command(st.admin, st.channel, "admin blocked add", {"word": "Forbidden"})
    await admin.wait_response()
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "a FORBIDDEN thing"})
    msg = await private_answer(inter)
    assert "does not allow" in str(msg.embeds).lower()
    assert st.b.queues.render.depth().backlog == 0 and order_rows(st.b) == 0


async def test_face_detail_follows_the_preset_and_the_setting(studio: Studio) -> None:
    """Full-body and landmark presets ask the agent to redraw small faces, close-ups do not; a re-roll keeps
    the parent's choice, an upscale never redraws; the global setting turns it off everywhere."""
    st = studio
    st.seed_model(st.alice)
    landmark = await _imagine(st, st.alice, "smiling", style="eiffel-tower")
    assert landmark.face_detail is True and "Eiffel Tower" in landmark.prompt
    await asyncio.to_thread(st.agent.finish_render, landmark)
    result = await st.sim.wait_for_message(st.channel, _result, timeout=10)
    for action, expected in (("rr", True), ("up", False)):
        click = await st.sim.click(st.alice, result, f"pg:{action}:{landmark.order_id}:0")
        await click.wait_response()
        followup = await asyncio.to_thread(st.agent.take_render)
        assert followup.face_detail is expected, action
        await asyncio.to_thread(st.agent.finish_render, followup)

    headshot = await _imagine(st, st.alice, "smiling", style="headshot")
    assert headshot.face_detail is False
    await asyncio.to_thread(st.agent.finish_render, headshot)
    free = await _imagine(st, st.alice, "sks man on a beach")
    assert free.face_detail is True  # a free prompt asks; the agent redoes only faces that are small
    await asyncio.to_thread(st.agent.finish_render, free)

    st.settings = st.settings.model_copy(update={"render_face_detail": False})
    await st.restart()
    off = await _imagine(st, st.alice, "smiling", style="eiffel-tower")
    assert off.face_detail is False


async def test_result_buttons_and_commands_share_one_rate_limit(studio: Studio) -> None:
    """Why the bot keeps its own limiter over discord.py's app-command cooldowns: a member's button presses (a
    component interaction runs no app-command check) count against the same budget as their commands."""
    st = studio
    st.seed_model(st.alice)
    job = await _imagine(st, st.alice, "at the beach", count=2, seed=7)  # 1st hit
    await asyncio.to_thread(st.agent.finish_render, job)
    result = await st.sim.wait_for_message(st.channel, _result, timeout=10)
    st.bot.limiter.limit = 3  # type: ignore[union-attr]

    click = await st.sim.click(st.alice, result, f"pg:up:{job.order_id}:0")  # 2nd: a button
    assert "slow down" not in str((await click.wait_response()).embeds).lower()
    await asyncio.to_thread(st.agent.take_render)
    inter = await st.sim.invoke_command(st.alice, st.channel, "orders")  # 3rd: a command
    assert "slow down" not in str((await inter.wait_response()).embeds).lower()

    click = await st.sim.click(st.alice, result, f"pg:var:{job.order_id}:1")  # 4th: over the limit
    response = await click.wait_response()
    assert response.ephemeral and "slow down" in str(response.embeds).lower()
    assert st.b.queues.render.depth().backlog == 0  # nothing queued for the refused press
    inter = await st.sim.invoke_command(st.alice, st.channel, "orders")  # and commands are limited as well
    assert "slow down" in str((await inter.wait_response()).embeds).lower()
