"""Safe to post, the bot's half, through the real discord.py client and the sim: the server's policy over the
agent's verdicts, blocked pictures deleted, replaced by a plain notice, recorded, counted and shown to admins.

What is real: the bot, the sim (with Discord's age-restricted channel flag), the order store, the blob store,
and the verdicts — taken by the agent's own checker (NudeNet's real model) on a real photo, the astronaut
portrait the demo ships. No explicit picture can live in this repository, so the agent's checker is configured
to block a class the real model really detects on that photo (FACE_FEMALE): the verdict the bot gets is a
genuine "flagged".
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from agent_part import AgentPart, picture
from PIL import Image
from sqlmodel import select
from studio import Studio

from bot.dashboard.data import dashboard_data
from bot.dashboard.page import render_page
from bot.errors import NotFound, Refused
from bot.services import member_orders
from bot.services.safety import PICTURES_BLOCKED
from cloud.messages import ImageSafety, RenderJob
from gpu_agent.agent.safety import SafetyGate
from storage import keys, read_session
from storage.models import BlockedPicture

PORTRAIT = Path(__file__).resolve().parents[2] / "photogen" / "assets" / "demo_photos" / "01-portrait.jpg"


def portrait_png() -> bytes:
    out = io.BytesIO()
    with Image.open(PORTRAIT) as img:
        img.convert("RGB").resize((256, 256)).save(out, "PNG")
    return out.getvalue()


def strict_agent(st: Studio) -> AgentPart:
    return AgentPart(
        st.b.queues, st.b.blobs, gate=SafetyGate(threshold=0.5, blocked_labels=frozenset({"FACE_FEMALE"}))
    )


async def imagine(st: Studio, channel, count: int = 2) -> RenderJob:
    inter = await st.sim.invoke_command(st.alice, channel, "imagine", {"prompt": "portrait", "count": count})
    await inter.wait_original(lambda m: bool(m.embeds) and not m.loading)
    return await asyncio.to_thread(st.agent.take_render)


def finish_with_portrait_first(agent: AgentPart, job: RenderJob) -> list[str]:
    """Picture 1 is the real portrait (flagged by the configured checker), the others plain pictures."""
    outputs = [keys.render_key(job.user_id, job.job_id, n) for n in range(job.count)]
    agent.blobs.put(outputs[0], portrait_png(), content_type="image/png")
    for n, key in enumerate(outputs[1:], start=1):
        agent.blobs.put(key, picture(n), content_type="image/png")
    agent.emit(job, "started")
    agent.emit(job, "done", output_keys=outputs)
    return outputs


def blocked_rows(st: Studio) -> list[BlockedPicture]:
    with read_session(st.b.engine) as s:
        return list(s.exec(select(BlockedPicture)))


def _posted(job: RenderJob):
    return lambda m: f"pg:var:{job.order_id}:" in str(m.custom_ids()) or "was not posted" in m.content


async def test_default_policy_blocks_a_flagged_picture_with_a_notice_and_counts_it(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    before = PICTURES_BLOCKED.labels(reason="flagged")._value.get()
    job = await imagine(st, st.channel)
    outputs = await asyncio.to_thread(finish_with_portrait_first, strict_agent(st), job)
    result = await st.sim.wait_for_message(st.channel, _posted(job), timeout=15)

    assert (
        "Picture 1 was not posted: the safety check flagged it and this server does not allow"
        in result.content
    )
    assert set(result.files) == {"2.png"}  # the safe picture only (one picture: no grid)
    ids = set(result.custom_ids())
    assert {f"pg:up:{job.order_id}:1", f"pg:var:{job.order_id}:1"} <= ids
    assert not ids & {f"pg:up:{job.order_id}:0", f"pg:var:{job.order_id}:0"}  # nothing to reuse of picture 1
    assert not st.b.blobs.exists(outputs[0]) and st.b.blobs.exists(outputs[1])  # the flagged blob is gone
    (row,) = blocked_rows(st)
    assert row.order_id == job.order_id and row.guild_id == str(st.guild.id) and row.reason == "flagged"
    assert 0.6 < row.score <= 1.0  # the real model's score for the face
    assert PICTURES_BLOCKED.labels(reason="flagged")._value.get() == before + 1
    dashboard = dashboard_data(st.b.engine, window_s=3600)
    assert dashboard["pictures_blocked"] == 1
    assert '>Pictures blocked</div><div class="v">1<' in render_page(dashboard)

    # Admins see the count; members cannot run the command.
    inter = await st.sim.invoke_command(st.admin, st.channel, "admin safety", {})
    response = await inter.wait_response()
    assert response.ephemeral and "Pictures blocked here so far: 1" in response.content
    assert "**block**" in response.content
    inter = await st.sim.invoke_command(st.alice, st.channel, "admin safety", {}, check_permissions=False)
    response = await inter.wait_response()
    assert response.ephemeral and "only this server's photogen admins" in str(response.embeds).lower()

    # The blocked picture cannot be reused (a button on an older copy of the message, say); picture 2 can.
    rules = await member_orders.load_rules(st.bot, st.guild.id)
    with pytest.raises(NotFound, match="was not posted"):
        await asyncio.to_thread(
            member_orders.place_followup_render,
            st.b,
            job.order_id,
            0,
            "var",
            user_id=st.alice.id,
            channel_id=st.channel.id,
            rules=rules,
        )
    assert st.b.queues.render.depth().backlog == 0
    click = await st.sim.click(st.alice, result, f"pg:var:{job.order_id}:1")
    await click.wait_response()
    await asyncio.to_thread(st.agent.take_render)
    await st.restart()  # the outbox row is sent: a restart posts nothing again
    await asyncio.sleep(0.5)
    assert len([m for m in st.sim.messages(st.channel) if "was not posted" in m.content]) == 1
    assert len(blocked_rows(st)) == 1


async def test_age_restricted_policy_posts_flagged_pictures_only_in_age_restricted_channels(
    studio: Studio,
) -> None:
    st = studio
    st.seed_model(st.alice)
    after_dark = st.sim.add_channel(st.guild, "after-dark", nsfw=True)
    await asyncio.sleep(0.3)  # CHANNEL_CREATE reaches the bot's cache
    inter = await st.sim.invoke_command(
        st.admin, st.channel, "admin safety", {"policy": "age_restricted_only"}
    )
    response = await inter.wait_response()
    assert "**age_restricted_only**" in response.content

    job = await imagine(st, after_dark)
    await asyncio.to_thread(finish_with_portrait_first, strict_agent(st), job)
    result = await st.sim.wait_for_message(after_dark, _posted(job), timeout=15)
    assert "was not posted" not in result.content
    assert set(result.files) == {"grid.jpg"}  # both pictures, in one grid
    assert blocked_rows(st) == []

    job = await imagine(st, st.channel)  # an ordinary channel of the same server
    await asyncio.to_thread(finish_with_portrait_first, strict_agent(st), job)
    result = await st.sim.wait_for_message(st.channel, _posted(job), timeout=15)
    assert (
        "Picture 1 was not posted" in result.content and "only in age-restricted channels" in result.content
    )
    assert set(result.files) == {"2.png"}
    assert len(blocked_rows(st)) == 1

    # An admin marks the channel age-restricted on Discord: the bot sees the change (CHANNEL_UPDATE).
    assert not st.bot.get_channel(st.channel.id).is_nsfw()
    st.sim.set_channel_nsfw(st.channel, True)
    await st.sim.wait_until(lambda: st.bot.get_channel(st.channel.id).is_nsfw(), 5)


async def test_unchecked_and_withheld_pictures_are_never_posted_whatever_the_policy(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    after_dark = st.sim.add_channel(st.guild, "after-dark", nsfw=True)
    await asyncio.sleep(0.3)
    inter = await st.sim.invoke_command(
        st.admin, st.channel, "admin safety", {"policy": "age_restricted_only"}
    )
    await inter.wait_response()
    job = await imagine(st, after_dark)
    outputs = [keys.render_key(job.user_id, job.job_id, n) for n in range(2)]
    for n, key in enumerate(outputs):
        st.b.blobs.put(key, picture(n), content_type="image/png")
    # An agent that sent no verdict for picture 1, and whose base model's safety checker blanked picture 2.
    withheld = ImageSafety(key=outputs[1], flagged=True, score=1.0, withheld=True, checker="base-model")
    st.agent.emit(job, "done", output_keys=outputs, safety=[withheld])
    result = await st.sim.wait_for_message(after_dark, lambda m: "was not posted" in m.content, timeout=15)
    assert "Picture 1 was not posted: it could not be safety-checked." in result.content
    assert "Picture 2 was not posted: the model's own safety checker blocked it." in result.content
    assert result.files == {} and not result.custom_ids()  # no black square, no buttons
    assert sorted(r.reason for r in blocked_rows(st)) == ["unchecked", "withheld"]
    assert not any(st.b.blobs.exists(k) for k in outputs)


async def test_an_upscaled_result_offers_no_upscale_again(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    job = await imagine(st, st.channel, count=1)
    await asyncio.to_thread(st.agent.finish_render, job)
    first = await st.sim.wait_for_message(st.channel, _posted(job), timeout=15)
    click = await st.sim.click(st.alice, first, f"pg:up:{job.order_id}:0")
    await click.wait_response()
    upscale = await asyncio.to_thread(st.agent.take_render)
    assert upscale.mode == "upscale"
    await asyncio.to_thread(st.agent.finish_render, upscale, (256, 256))
    result = await st.sim.wait_for_message(st.channel, _posted(upscale), timeout=15)
    ids = set(result.custom_ids())
    assert f"pg:var:{upscale.order_id}:0" in ids and not any(i.startswith("pg:up:") for i in ids)
    # Asked anyway (a button of an older bot version), it is refused and nothing is queued.
    rules = await member_orders.load_rules(st.bot, st.guild.id)
    with pytest.raises(Refused, match="already upscaled"):
        await asyncio.to_thread(
            member_orders.place_followup_render,
            st.b,
            upscale.order_id,
            0,
            "up",
            user_id=st.alice.id,
            channel_id=st.channel.id,
            rules=rules,
        )
    assert st.b.queues.render.depth().backlog == 0
