"""Few-shot training and studio backdrops through the real agent (in a thread; tiny random models on the CPU):

- a three-photo TrainJob (one held out as the likeness reference, as the bot sends it) trains on the two photos
  and the pictures made from them, the done event says so, and the likeness reference holds the real photos only;
- a RenderJob in mode "backdrop" replaces the background of a stored picture of a real face, keeps the person,
  is scored for likeness against the member's model and safety-checked, like every render;
- a picture without a face gets a clear failure, not a half-made picture."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from agent_testkit import EventLog, render_job, train_job
from PIL import Image

import tests.gpu_agent.photo_cases as pc
from cloud.messages import AugmentedSet, encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.photos import PhotoCheckConfig, check_photos
from gpu_agent.photos.likeness import Reference, build_reference
from gpu_agent.photos.person_mask import person_mask
from storage import keys
from storage.blobs.base import BlobStore


@pytest.fixture(scope="module")
def door_crops(faces_dir: Path) -> list[bytes]:
    """Three photos of one person as the door stores them (face-centred JPEG crops; 256 px for speed)."""
    chosen = [p for p in pc.astronaut_set(faces_dir) if p[0] in ("full.jpg", "zoom.jpg", "tilt-left.jpg")]
    report = check_photos(chosen, PhotoCheckConfig(min_good_photos=3, crop_size=256))
    assert report.accepted and len(report.good) == 3
    return [p.crop_jpeg for p in report.good]


def test_a_three_photo_training_trains_on_the_augmented_set_and_says_so(
    make_settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread, door_crops
) -> None:
    settings = make_settings(fewshot_augment_below=8, fewshot_variants_per_photo=4)
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = train_job(blobs, steps=2)
    for key, crop in zip(job.photo_keys, door_crops, strict=True):
        blobs.put(key, crop, content_type="image/jpeg")
    job = job.model_copy(update={"held_out_photo": 2})  # as the bot sends a set of three
    queues.train.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind in ("done", "failed"), 240, "done")
    assert done.kind == "done", done.error
    assert done.augmented == AugmentedSet(photos=2, images=2 + 2 * 4)
    meta = json.loads(blobs.get(keys.model_meta_key(job.user_id, job.model_id)))
    assert len(meta["photo_sha256"]) == 10, (
        "the LoRA was trained on the photos and the pictures made from them"
    )
    reference = Reference.from_json(blobs.get(keys.likeness_key(job.user_id, job.model_id)))
    assert reference.training.shape == (2, 128) and reference.held_out is not None  # real photos only
    agent.stop()


def test_only_a_set_smaller_than_the_setting_is_augmented(
    make_settings, blobs: BlobStore, tmp_path: Path
) -> None:
    """Counted as the member sent it (the held-out photo included), as the photo report counts it."""
    from gpu_agent.agent.fewshot import training_set

    job = train_job(blobs)  # three photos, synthetic: a set that would be augmented has no face to centre on
    photos = [tmp_path / "00.jpg", tmp_path / "01.jpg"]
    assert training_set(make_settings(fewshot_augment_below=3), job, photos, tmp_path / "a") == (photos, None)
    assert training_set(make_settings(fewshot_augment_below=0), job, photos, tmp_path / "b") == (photos, None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists(), "nothing was even tried"


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_a_backdrop_job_replaces_the_background_and_keeps_the_person(
    settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread, faces_dir: Path
) -> None:
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    portrait = pc.load(faces_dir, "astronaut.png").crop((96, 0, 352, 256))  # a render of the member, say
    user, model = "u1backdrop", "m1backdrop"
    model_key = keys.model_key(user, model)
    blobs.put(model_key, b"weights are not read by a backdrop job")
    from PIL import ImageOps

    # The model's photos: other shots of her (the picture itself would be scored as a copy of a photo).
    photos = [
        ImageOps.mirror(pc.load(faces_dir, "astronaut.png")),
        pc.tilted(pc.load(faces_dir, "astronaut.png"), 9, (60, 10, 420, 420)),
    ]
    reference = build_reference(photos, None)
    assert reference is not None
    blobs.put(keys.likeness_key(user, model), reference.to_json())
    source = keys.render_key(user, "earlier-job", 0)
    blobs.put(source, _png(portrait), content_type="image/png")
    job = render_job(
        user_id=user,
        model_id=model,
        model_keys=[model_key],
        mode="backdrop",
        backdrop="white",
        source_key=source,
    )
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind in ("done", "failed"), 120, "done")
    assert done.kind == "done", done.error
    assert done.render_keys == [keys.render_key(user, job.job_id, 0)]
    result = Image.open(io.BytesIO(blobs.get(done.render_keys[0]))).convert("RGB")
    assert result.size == portrait.size
    mask = person_mask(portrait).alpha
    before, after = np.asarray(portrait, np.float32), np.asarray(result, np.float32)
    assert np.abs(after[mask < 0.05] - 244).mean() < 25, "the background is studio white"
    assert np.abs(after[mask > 0.95] - before[mask > 0.95]).mean() < 2, "the person is as they were"
    assert [v.key for v in done.safety] == done.render_keys and not done.safety[0].flagged
    assert done.likeness is not None and done.likeness[0].verdict in ("strong", "fair")
    assert done.likeness[0].tries == 1, "a backdrop is never re-rolled: the member chose that picture"

    blank = keys.render_key(user, "earlier-job", 1)
    blobs.put(blank, _png(Image.new("RGB", (128, 128), (40, 90, 160))), content_type="image/png")
    faceless = render_job(user_id=user, mode="backdrop", backdrop="blur", source_key=blank)
    queues.render.send(encode(faceless))
    failed = events.wait_for(lambda e: e.job_id == faceless.job_id and e.kind == "failed", 60, "failed")
    assert failed.error is not None and failed.error.code == "no_face"
    assert "No face was found" in failed.error.message
    assert not blobs.exists(keys.render_key(user, faceless.job_id, 0))
    agent.stop()
