"""Instruction edits through the agent: a RenderJob in mode "edit" runs the InstructPix2Pix model EDIT_MODEL
names (the tiny random one here) on the stored picture, with the member's LoRA active, and its pictures pass
the same safety check and likeness check as every other picture. A LoRA of another base family fails the job
with words a member can read."""

from __future__ import annotations

import io
from pathlib import Path

from agent_testkit import EventLog, png, render_job
from PIL import Image

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.tiny import save_tiny_lora
from gpu_agent.photos.likeness import build_reference
from storage import keys
from storage.blobs.base import BlobStore

DEMO = Path(__file__).resolve().parents[3] / "photogen" / "assets" / "demo_photos"


def _member_model(blobs: BlobStore, tmp_path: Path, user_id: str, base: str, *, reference: bool) -> str:
    model_id = f"m{user_id}"
    lora = save_tiny_lora(base, tmp_path / f"{model_id}-{base}.safetensors", seed=4)
    key = keys.model_key(user_id, model_id)
    blobs.put(key, lora.read_bytes(), content_type="application/octet-stream")
    if reference:
        photos = [Image.open(DEMO / name).convert("RGB") for name in ("01-portrait.jpg", "03-closer.jpg")]
        ref = build_reference(photos, None)
        assert ref is not None
        blobs.put(keys.likeness_key(user_id, model_id), ref.to_json(), content_type="application/json")
    return key


def test_an_edit_job_runs_instructpix2pix_with_the_members_lora_and_every_check(
    make_settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread, tmp_path: Path
) -> None:
    settings = make_settings(edit_model="tiny-ip2p")
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = render_job(mode="edit", prompt="make it night", source_key="pending", image_guidance=2.0)
    model_key = _member_model(blobs, tmp_path, job.user_id, "tiny-sd", reference=True)
    source = keys.render_key(job.user_id, "earlier-job", 0)
    blobs.put(source, png(3, size=64), content_type="image/png")
    job = job.model_copy(
        update={"source_key": source, "model_keys": [model_key], "model_id": keys.model_of(model_key)}
    )
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind in ("done", "failed"), 180, "done")
    assert done.kind == "done", done.error
    stored = blobs.get(done.render_keys[0])
    with Image.open(io.BytesIO(stored)) as img:
        assert img.size == (64, 64)  # the source's size
    params = read_png_params(stored)
    assert params.mode == "edit" and params.base_model == "tiny-ip2p"
    assert params.prompt == "photo of sks person, make it night"  # the member's token leads, for their LoRA
    assert params.lora == job.model_id and "image guidance 2" in params.sampler
    assert [v.key for v in done.safety] == done.render_keys  # NudeNet looked at it before it was stored
    assert done.likeness is not None and len(done.likeness) == 1  # scored against the member's reference
    assert done.likeness[0].tries == 1  # kept, never re-rolled: the member chose picture and instruction
    agent.stop()


def test_an_edit_with_an_sdxl_members_lora_fails_with_the_reason(
    make_settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread, tmp_path: Path
) -> None:
    settings = make_settings(edit_model="tiny-ip2p")
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = render_job(mode="edit", prompt="make it night", source_key="pending", base_model="tiny-sdxl")
    model_key = _member_model(blobs, tmp_path, job.user_id, "tiny-sdxl", reference=False)
    source = keys.render_key(job.user_id, "earlier-job", 0)
    blobs.put(source, png(5, size=64), content_type="image/png")
    job = job.model_copy(update={"source_key": source, "model_keys": [model_key]})
    queues.render.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 180, "failed")
    assert failed.error is not None and failed.error.code == "model_unusable"
    assert "SD 1.5" in failed.error.message and "Edit without your model" in failed.error.message
    assert not list(blobs.list(keys.render_prefix(job.user_id, job.job_id)))
    agent.stop()
