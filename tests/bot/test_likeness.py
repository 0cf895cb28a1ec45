"""Likeness on every render, through the real bot and a real agent (in a thread) on the tiny models.

/train runs for real: the bot checks and crops the demo photos (Eileen Collins), the agent trains a tiny LoRA and
stores the likeness reference beside it. For /imagine, a tiny random model cannot draw anyone, so a STAND-IN
RENDERER is injected at the engine boundary (the agent's JobRunner): it runs the real tiny render and then returns
real photos instead of its noise — Grace Hopper (someone else) for the job's own seeds and a photo of the member
for the re-rolls'. Everything else (queues, blobs, scoring, events, the order store, Discord) is real.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance, ImageOps
from sqlmodel import select
from studio import MANAGE_GUILD, Studio, bot_settings

from bot.services.member_orders import delete_model
from cloud.messages import RenderJob, TrainJob
from gpu_agent.agent import Agent
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.agent.runner import RenderOutcome
from gpu_agent.photos.likeness import Reference
from photogen.assets import OTHER_PERSON_PHOTO, demo_photos
from photogen.discord_sim.server import DiscordSim
from storage import Image as ImageRow
from storage import keys, order_store, read_session, standing
from tests.gpu_agent.agent.agent_testkit import AgentThread


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


SOMEONE_ELSE = _png(Image.open(OTHER_PERSON_PHOTO).convert("RGB").resize((512, 600)))
SOMEONE_ELSE_DARKER = _png(
    ImageEnhance.Brightness(Image.open(OTHER_PERSON_PHOTO).convert("RGB")).enhance(0.8)
)
# The member, in a picture that is none of the training photos (mirrored, brighter, reframed).
_portrait = Image.open(io.BytesIO(demo_photos()[0][1])).convert("RGB")
MEMBER = _png(
    ImageEnhance.Brightness(ImageOps.mirror(_portrait))
    .enhance(1.15)
    .crop((30, 0, 512, 482))
    .resize((512, 512))
)


class StandInRenderer(EngineRunner):
    """The engine boundary's stand-in: the real tiny render, then a scripted real photo per seed."""

    def __init__(self, settings, script: dict[int, bytes]) -> None:
        super().__init__(settings)
        self.script = script
        self.calls: list[tuple[str, int, int]] = []

    def render(self, job: RenderJob, loras, source, **kwargs) -> RenderOutcome:
        real = super().render(job, loras, source, **kwargs)
        self.calls.append((job.job_id, job.seed, job.count))
        if job.mode != "txt2img" or not job.prompt.startswith("portrait"):
            return real  # the first pictures made at training stay the tiny model's own
        pngs = [self.script[job.seed + i] for i in range(job.count)]
        return RenderOutcome(pngs=pngs, flagged=[None] * job.count)


@pytest.fixture
async def studio(sim: DiscordSim, tmp_path: Path) -> AsyncIterator[Studio]:
    guild = sim.add_guild("Photo Club")
    channel = sim.add_channel(guild, "studio")
    admin_role = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    st = Studio(
        sim=sim,
        guild=guild,
        channel=channel,
        admin_role=admin_role,
        tmp=tmp_path,
        settings=bot_settings(
            sim,
            tmp_path,
            bot_sync_guild_ids=[guild.id],
            base_model="tiny-sd",
            train_resolution=64,
            train_steps=4,
            train_class_images=2,
            likeness_retries=2,
            likeness_advice_after=1,
        ),
        alice=sim.add_member(guild, "alice"),
        bob=sim.add_member(guild, "bob"),
        admin=sim.add_member(guild, "ada", roles=[admin_role]),
    )
    await st.start()
    try:
        yield st
    finally:
        if st.bot is not None:
            await st.bot.close()


def _agent(st: Studio, tmp_path: Path, script: dict[int, bytes]) -> tuple[AgentThread, StandInRenderer]:
    settings = st.settings.model_copy(
        update={
            "agent_work_dir": str(tmp_path / "agent"),
            "model_cache_dir": str(tmp_path / "models"),
            "device": "cpu",
            "imds_url": "",
            "agent_metrics_port": 0,
            "agent_poll_wait_s": 0.3,
            "agent_progress_every_s": 0,
            "checkpoint_every_steps": 2,
        }
    )
    runner = StandInRenderer(settings, script)
    return AgentThread(Agent(settings, runner=runner)).start(), runner


async def _imagine(st: Studio, seed: int, count: int):
    before = {m.id for m in st.sim.messages(st.channel)}
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "imagine", {"prompt": "portrait of {subject}", "count": count, "seed": seed}
    )
    await inter.wait_response()
    return await st.sim.wait_for_message(
        st.channel,
        lambda m: m.id not in before and any(c.startswith("pg:up:") for c in m.custom_ids()),
        timeout=120,
    )


def _credits(st: Studio) -> int:
    with read_session(st.b.engine) as s:
        return standing.credits_of(s, st.guild.id, st.alice.id)


async def test_weak_renders_are_rerolled_free_the_best_delivered_scores_stored(
    studio: Studio, tmp_path: Path
) -> None:
    st = studio
    script = {
        7: SOMEONE_ELSE,
        8: MEMBER,  # the job's own two pictures: the first is someone else
        9: SOMEONE_ELSE_DARKER,
        11: MEMBER,  # picture 1's re-rolls (seed 7 + 2 × attempt + 0)
        20: SOMEONE_ELSE,
        21: SOMEONE_ELSE_DARKER,
        22: SOMEONE_ELSE,  # a render that never looks like her
    }
    agent, runner = _agent(st, tmp_path, script)
    try:
        inter = await st.sim.invoke_command(
            st.alice, st.channel, "train", {"name": "me", "class_word": "woman"}, attachments=demo_photos()
        )
        await inter.wait_response()
        ready = await st.sim.wait_for_message(
            st.channel, lambda m: "trained and ready" in m.content, timeout=240
        )
        with read_session(st.b.engine) as s:
            (model,) = order_store.models_of_user(s, st.alice.id)
        # The reference beside the LoRA: the accepted photos but one trained on, the last one held out.
        reference = Reference.from_json(st.b.blobs.get(keys.likeness_key(st.alice.id, model.id)))
        with read_session(st.b.engine) as s:
            (train_job,) = order_store.jobs_of_order(s, model.order_id)
        sent = TrainJob.model_validate(train_job.payload)
        assert sent.held_out_photo == len(sent.photo_keys) - 1 >= 2
        assert reference.held_out is not None and len(reference.training) == len(sent.photo_keys) - 1
        # The order's first picture, made right after training, is the tiny model's noise: no face, so it was
        # re-rendered twice (seeds 1 and 2) and the member is told.
        assert [(seed, count) for j, seed, count in runner.calls if j == train_job.id] == [
            (0, 1),
            (1, 1),
            (2, 1),
        ]
        assert "Looks like you: no face found — re-rendered 2×" in ready.content, ready.content

        credits = _credits(st)
        result = await _imagine(st, seed=7, count=2)
        job_id = runner.calls[-1][0]
        # Picture 1 was someone else: re-rendered with new seeds until it looked like her; picture 2 passed.
        assert [(seed, count) for j, seed, count in runner.calls if j == job_id] == [(7, 2), (9, 1), (11, 1)]
        delivered = [st.b.blobs.get(keys.render_key(st.alice.id, job_id, n)) for n in range(2)]
        assert delivered == [MEMBER, MEMBER]
        assert "Looks like you: 1: strong" in result.content and "2: strong" in result.content, result.content
        assert "re-rendered 2× automatically" in result.content and "no charge" in result.content
        assert _credits(st) == credits - 2 * st.settings.render_credit_cost  # the re-rolls cost nothing
        # The seeds shown and stored are the ones that made the pictures kept: 11 (a re-roll) and 8.
        seed_field = next(f for f in result.embeds[0]["fields"] if f["name"] == "Seed")
        assert seed_field["value"] == "pictures 1–2: 11, 8", seed_field
        with read_session(st.b.engine) as s:
            kept = s.exec(select(ImageRow).where(ImageRow.job_id == job_id).order_by(ImageRow.index)).all()
        assert [r.seed for r in kept] == [11, 8]

        # A render that never looks like her: the best of 1 + 2 tries is delivered, said to be weak, and with
        # the first weak picture of this model (LIKENESS_ADVICE_AFTER=1) she is told what to change.
        result = await _imagine(st, seed=20, count=1)
        job2 = runner.calls[-1][0]
        assert [(seed, count) for j, seed, count in runner.calls if j == job2] == [(20, 1), (21, 1), (22, 1)]
        assert "Looks like you: weak (0." in result.content, result.content
        advice = await st.sim.wait_for_message(
            st.channel, lambda m: "Tips for better likeness" in str(m.embeds), timeout=20
        )
        assert "more photos" in str(advice.embeds) and "only you" in str(advice.embeds)
        assert _credits(st) == credits - 3 * st.settings.render_credit_cost

        with read_session(st.b.engine) as s:
            rows = list(
                s.exec(
                    select(ImageRow)
                    .where(ImageRow.user_id == str(st.alice.id))
                    .order_by(ImageRow.created_at, ImageRow.index)
                )
            )
        scored = [
            (r.job_id, r.index, r.likeness_verdict, r.likeness_tries)
            for r in rows
            if r.job_id in (job_id, job2)
        ]
        assert scored == [(job_id, 0, "strong", 3), (job_id, 1, "strong", 1), (job2, 0, "weak", 3)]
        assert all(0 <= (r.likeness_score or 0) <= 1 for r in rows if r.likeness_verdict)

        # The reference lives under the model's prefix: deleting the model deletes it.
        await asyncio.to_thread(delete_model, st.b, st.alice.id, model.id)
        assert not st.b.blobs.exists(keys.likeness_key(st.alice.id, model.id))
    finally:
        agent.stop()
