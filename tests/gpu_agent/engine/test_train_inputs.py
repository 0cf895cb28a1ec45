"""Bad input to the trainer gets a clear, specific error and leaves nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from gpu_agent.engine.models import BaseModelError
from gpu_agent.engine.training import TrainConfig, TrainingInputError, train_lora


@pytest.mark.parametrize(
    "photos,message",
    [
        ([], "no photos to train on"),
        (["not-an-image.jpg"], "photo 0 is a str, not a decoded PIL image"),
        ([Image.new("RGB", (4, 4))], "photo 0 is only 4x4 pixels"),
    ],
)
def test_bad_photo_lists_are_refused_before_anything_is_written(
    tmp_path: Path, photos: list, message: str
) -> None:
    with pytest.raises(TrainingInputError, match=message):
        train_lora(
            TrainConfig(base_model="tiny-sd", resolution=32, steps=1),
            photos,
            output_dir=tmp_path / "out",
            device="cpu",
            checkpoint_dir=tmp_path / "ckpt",
        )
    assert not (tmp_path / "out").exists() and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("resolution", 50, "multiple of 8"),
        ("resolution", 16, "greater than or equal to 32"),
        ("resolution", 4096, "less than or equal to 2048"),
        ("steps", 0, "greater than or equal to 1"),
        ("token", "Sks Man", "one lowercase word"),
        ("class_word", "man; rm -rf /", "lowercase letters"),
        ("instance_prompt", "a photo of a man", "must contain {token}"),
        ("learning_rate", 1.0, "less than or equal to 0.01"),
        ("not_a_field", 1, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainConfig(base_model="tiny-sd", **{field: value})


def test_half_precision_on_a_cpu_is_refused(tmp_path: Path, face_photos: list[Image.Image]) -> None:
    config = TrainConfig(base_model="tiny-sd", resolution=32, steps=1, mixed_precision="fp16")
    with pytest.raises(TrainingInputError, match="fp16 mixed precision needs a CUDA GPU"):
        train_lora(config, face_photos, output_dir=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_resolution_that_the_model_cannot_halve_is_refused(
    tmp_path: Path, face_photos: list[Image.Image]
) -> None:
    from gpu_agent.engine.tiny import build_tiny_pipeline

    # A pipeline whose VAE claims SD's 8x downsampling, as full-size SD has: 40 px is no multiple of 16.
    pipe = build_tiny_pipeline("tiny-sd")
    pipe.vae_scale_factor = 8
    with pytest.raises(
        TrainingInputError, match=r"resolution 40 does not fit base model tiny-sd: .* multiple of 16"
    ):
        train_lora(
            TrainConfig(base_model="tiny-sd", resolution=40, steps=1, prior_preservation=False),
            face_photos,
            output_dir=tmp_path / "out",
            device="cpu",
            pipeline=pipe,
        )
    assert not (tmp_path / "out").exists()


def test_missing_base_model_folder_is_a_clear_error(tmp_path: Path, face_photos: list[Image.Image]) -> None:
    config = TrainConfig(base_model=str(tmp_path / "no-such-model"), resolution=32, steps=1)
    with pytest.raises(BaseModelError, match=r"no-such-model'?: no such file or folder"):
        train_lora(config, face_photos, output_dir=tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
