"""Few photos and studio backdrops over the project's Discord-compatible server:

- a /train with three good photos is accepted (MIN_GOOD_PHOTOS 3), its report tells the member what they will
  get and how to do better, and the model-ready post says the set was augmented (the done event here comes from
  the test's stand-in agent, with the field the real agent sets: tests/gpu_agent/agent/test_agent_fewshot.py
  runs the real agent on such a set);
- "Clean backdrop" on a result opens a private picker; a choice places a RenderJob in mode "backdrop" that the
  real agent (a thread of this process, CPU) turns into the picture with a white background, posted with the
  usual buttons."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image
from studio import Studio, answer, private_answer
from test_train import good_photos

import tests.gpu_agent.photo_cases as pc
from cloud.messages import AugmentedSet
from gpu_agent.agent import Agent
from storage import keys, lifecycle


async def test_a_three_photo_train_is_accepted_with_advice_and_says_it_was_augmented(
    studio: Studio, faces_dir: Path
) -> None:
    st = studio
    st.settings = st.settings.model_copy(update={"min_good_photos": 3, "fewshot_augment_below": 8})
    await st.restart()
    photos = good_photos(faces_dir)[:3]
    inter = await st.sim.invoke_command(
        st.alice, st.channel, "train", {"name": "few", "class_word": "woman"}, attachments=photos
    )
    report = await answer(inter, timeout=60)
    seen = str(report.embeds)
    assert report.embeds[0]["title"] == "Training order accepted", seen
    assert "3 of 3 photos are good" in seen and "extra pictures" in seen and "add 5 or more photos" in seen
    job = await asyncio.to_thread(st.agent.take_train)
    assert len(job.photo_keys) == 3 and job.held_out_photo == 2

    lora = keys.model_key(job.user_id, job.model_id)
    st.b.blobs.put(lora, b"weights")
    await asyncio.to_thread(st.agent.emit, job, "started")
    await asyncio.to_thread(
        st.agent.emit,
        job,
        "done",
        output_keys=[lora],
        model_key=lora,
        augmented=AugmentedSet(photos=2, images=14),
    )
    ready = await st.sim.wait_for_message(st.channel, lambda m: "trained and ready" in m.content, timeout=10)
    assert "trained on 14 pictures made from 2 of your photos" in ready.content


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


async def test_clean_backdrop_on_a_result_through_the_real_agent(studio: Studio, faces_dir: Path) -> None:
    st = studio
    st.seed_model(st.alice, name="me")
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "portrait", "count": 1})
    await inter.wait_original(lambda m: not m.loading and bool(m.embeds))
    job = await asyncio.to_thread(st.agent.take_render)
    portrait = pc.load(faces_dir, "astronaut.png").crop((96, 0, 352, 256))  # the render: a real face
    key = keys.render_key(job.user_id, job.job_id, 0)
    st.b.blobs.put(key, _png(portrait), content_type="image/png")
    await asyncio.to_thread(st.agent.emit, job, "started")
    await asyncio.to_thread(st.agent.emit, job, "done", output_keys=[key], render_keys=[key])
    oid = job.order_id
    result = await st.sim.wait_for_message(st.channel, lambda m: f"pg:bd:{oid}" in m.custom_ids(), timeout=10)
    assert f"pg:up:{oid}:0" in result.custom_ids(), "the other buttons are still there"

    refused = await st.sim.click(st.bob, result, f"pg:bd:{oid}")
    assert "belong" in str((await private_answer(refused)).embeds).lower()
    click = await st.sim.click(st.alice, result, f"pg:bd:{oid}")
    picker = await private_answer(click)
    assert {f"pg:bd:{oid}:0:{s}" for s in ("white", "grey", "black", "blur")} == set(picker.custom_ids())

    agent = Agent(
        st.settings.model_copy(
            update={
                "agent_work_dir": str(st.tmp / "agent"),
                "model_cache_dir": str(st.tmp.parent / "models"),
                "device": "cpu",
                "imds_url": "",
                "agent_metrics_port": 0,
                "agent_poll_wait_s": 0.2,
                "agent_progress_every_s": 0,
            }
        ),
        queues=st.b.queues,
        blobs=st.b.blobs,
    )
    stop = threading.Event()
    worker = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    worker.start()
    try:
        chosen = await st.sim.click(st.alice, picker, f"pg:bd:{oid}:0:white")
        status = await chosen.wait_original(lambda m: bool(m.embeds) and not m.loading)
        assert status.embeds[0]["title"] == "Picture 1, white backdrop: portrait", status.embeds
        done = await st.sim.wait_for_message(
            st.channel,
            lambda m: any(c.startswith("pg:rr:") and oid not in c for c in m.custom_ids()),
            timeout=60,
        )
        assert set(done.files) == {"1.png"}
        new_oid = next(c.split(":")[2] for c in done.custom_ids() if c.startswith("pg:rr:"))
        assert f"pg:bd:{new_oid}" in done.custom_ids()
        (stored_key,) = lifecycle.image_keys(st.b.engine, new_oid)
        stored = st.b.blobs.get(stored_key)
        picture = np.asarray(Image.open(io.BytesIO(stored)).convert("RGB"), np.float32)
        assert picture.shape == (256, 256, 3)
        assert np.abs(picture[:24, :24] - 244).mean() < 20, "the top corner is studio white now"
    finally:
        stop.set()
        await asyncio.to_thread(worker.join, 60)
