"""Photos still being prepared when training starts (issue 16, time to first picture): the trainer loads the model
and renders the class images meanwhile, waits for the photos only where it encodes them, trains exactly as on
photos given at once, and a preparation that fails ends the run with its own error, nothing written."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.training import TrainConfig, train_lora
from gpu_agent.engine.training import trainer as trainer_module
from gpu_agent.engine.training.conditioning import encode_batch, encode_images

RES = 32
FAST = {
    "resolution": RES,
    "rank": 4,
    "learning_rate": 1e-3,
    "prior_preservation": True,
    "train_text_encoder": False,
    "num_class_images": 2,
    "class_image_steps": 2,
}


class PhotosRefused(Exception):
    """The caller's preparation refused the photos (the agent's JobError plays this part)."""


def test_the_photos_are_awaited_after_the_model_load_and_the_class_images_and_train_the_same(
    tmp_path: Path, face_photos: list[Image.Image], model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(base_model="tiny-sd", steps=3, **FAST)
    given = train_lora(config, face_photos, output_dir=tmp_path / "a", device="cpu", cache_dir=model_cache)

    # The photos are handed over only once the class images exist: a trainer that waited for them first would
    # never get them (the preparation gives up after 60 s and the run fails).
    pending: Future[list[Image.Image]] = Future()
    rendered = threading.Event()
    real_class_images = trainer_module.class_images

    def class_images(*args: object, **kwargs: object) -> object:
        result = real_class_images(*args, **kwargs)  # type: ignore[arg-type]
        rendered.set()
        return result

    monkeypatch.setattr(trainer_module, "class_images", class_images)

    def prepare() -> None:
        if rendered.wait(60):
            pending.set_result(face_photos)
        else:
            pending.set_exception(PhotosRefused("never asked for"))

    threading.Thread(target=prepare, daemon=True).start()
    late = train_lora(config, pending, output_dir=tmp_path / "b", device="cpu", cache_dir=model_cache)

    assert list(late.timings)[:4] == ["model_load", "class_images", "photos", "caching"]
    assert late.meta["photo_sha256"] == given.meta["photo_sha256"]
    a, b = load_file(given.weights_path), load_file(late.weights_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_preparation_that_fails_ends_the_run_with_its_error_before_anything_is_written(
    tmp_path: Path, model_cache: Path
) -> None:
    failed: Future[list[Image.Image]] = Future()
    failed.set_exception(PhotosRefused("photo 5 is the same picture as photo 2"))
    cache = tmp_path / "cache"
    with pytest.raises(PhotosRefused, match="photo 5 is the same picture as photo 2"):
        train_lora(
            TrainConfig(base_model="tiny-sd", steps=2, **FAST),
            failed,
            output_dir=tmp_path / "out",
            device="cpu",
            cache_dir=cache,
            checkpoint_dir=tmp_path / "ckpt",
            pipeline=load_base_pipeline("tiny-sd", device="cpu", cache_dir=model_cache),
        )
    # refused right after the model load: no class image rendered, no checkpoint, no LoRA
    assert not list(cache.rglob("*.png"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()


def test_a_refusal_during_the_class_images_stops_them_at_the_next_step(
    tmp_path: Path, face_photos: list[Image.Image], model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending: Future[list[Image.Image]] = Future()
    steps: list[int] = []
    pipe = load_base_pipeline("tiny-sd", device="cpu", cache_dir=model_cache)
    real_step = type(pipe.scheduler).step

    def step(self: object, *args: object, **kwargs: object) -> object:
        steps.append(1)
        if len(steps) == 2:  # the second denoising step of the class images: the photos are refused
            pending.set_exception(PhotosRefused("refused"))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe.scheduler), "step", step)
    config = TrainConfig(base_model="tiny-sd", steps=2, **{**FAST, "class_image_steps": 20})
    with pytest.raises(PhotosRefused):
        train_lora(config, pending, output_dir=tmp_path / "out", device="cpu", pipeline=pipe)
    assert len(steps) == 2  # not the 20 steps asked for
    assert not (tmp_path / "out").exists()


def test_photos_and_class_images_are_encoded_in_batches_as_one_at_a_time(
    face_photos: list[Image.Image], model_cache: Path
) -> None:
    pipe = load_base_pipeline("tiny-sd", device="cpu", cache_dir=model_cache)
    cpu = torch.device("cpu")
    one = encode_images(pipe.vae, pipe.image_processor, face_photos, RES, sdxl=False, device=cpu, batch=1)
    batched = encode_images(pipe.vae, pipe.image_processor, face_photos, RES, sdxl=False, device=cpu)
    assert torch.allclose(one.mean, batched.mean, atol=1e-5) and torch.allclose(
        one.std, batched.std, atol=1e-5
    )
    photos, rest = batched.split(3)
    assert len(photos) == 3 and len(rest) == 1 and torch.equal(rest.mean[0], batched.mean[3])
    assert (encode_batch(1024), encode_batch(512), encode_batch(64)) == (1, 4, 16)
