"""Checkpoint -> kill -> resume gives the same LoRA, bit for bit, as a run that was never interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gpu_agent.engine.training import CheckpointError, TrainConfig, TrainingInterrupted, train_lora

REPO = Path(__file__).resolve().parents[3]
# Text-encoder LoRA, prior preservation, dropout (draws from the global RNG) and batches that cross epoch
# boundaries: everything whose state a resume must restore.
RICH = {
    "resolution": 32,
    "rank": 4,
    "learning_rate": 1e-3,
    "text_encoder_learning_rate": 1e-3,
    "train_text_encoder": True,
    "prior_preservation": True,
    "num_class_images": 2,
    "class_image_steps": 2,
    "lora_dropout": 0.1,
    "batch_size": 3,
    "lr_schedule": "cosine",
    "checkpoint_every": 2,
}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_resume_after_sigkill_is_bit_identical(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    config = TrainConfig(base_model="tiny-sd", steps=6, **RICH)
    reference = train_lora(
        config, face_photos, output_dir=tmp_path / "ref", device="cpu", cache_dir=model_cache
    )

    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for i, photo in enumerate(face_photos):
        photo.save(photo_dir / f"{i}.png")  # lossless: the child trains on the very same pixels
    checkpoints = tmp_path / "ckpt"
    child = textwrap.dedent(f"""
        import sys, time
        from PIL import Image
        from gpu_agent.engine.training import TrainConfig, train_lora
        folder = {str(photo_dir)!r}
        photos = [Image.open(f"{{folder}}/{{i}}.png").convert("RGB") for i in range({len(face_photos)})]
        def progress(step, total, loss, eta):
            if step == 3:  # the checkpoint of step 2 is on disk; wait here to be killed
                print("AT-STEP-3", flush=True)
                time.sleep(600)
        config = TrainConfig.model_validate_json({config.model_dump_json()!r})
        train_lora(config, photos, output_dir={str(tmp_path / "x")!r}, device="cpu",
                   cache_dir={str(model_cache)!r}, checkpoint_dir={str(checkpoints)!r}, progress=progress)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "AT-STEP-3":
                break
        assert (checkpoints / "LATEST").read_text() == "step-00000002"
        os.kill(proc.pid, signal.SIGKILL)  # a spot instance vanishing: no cleanup code runs
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "x" / "meta.json").exists()

    resumed = train_lora(
        config,
        face_photos,
        output_dir=tmp_path / "resumed",
        device="cpu",
        cache_dir=model_cache,
        checkpoint_dir=checkpoints,
    )
    assert resumed.meta["resumed_from_step"] == 2
    assert_same_weights(reference.weights_path, resumed.weights_path)
    assert resumed.meta["final_loss"] == reference.meta["final_loss"]


def test_should_stop_checkpoints_and_resume_matches_on_sdxl(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    # fp32 pinned here; the SIGKILL test above runs "auto" (bf16 on CPUs that compute it natively)
    config = TrainConfig(
        base_model="tiny-sdxl", steps=5, **{**RICH, "checkpoint_every": 100, "mixed_precision": "no"}
    )
    reference = train_lora(
        config, face_photos, output_dir=tmp_path / "ref", device="cpu", cache_dir=model_cache
    )

    polls = []

    def stop_at_3() -> bool:
        polls.append(1)
        return len(polls) == 4  # polled before steps 0,1,2,3: stop with 3 steps done

    checkpoints = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted) as stopped:
        train_lora(
            config,
            face_photos,
            output_dir=tmp_path / "out",
            device="cpu",
            cache_dir=model_cache,
            checkpoint_dir=checkpoints,
            should_stop=stop_at_3,
        )
    assert stopped.value.step == 3 and stopped.value.checkpoint.step == 3
    assert (checkpoints / "LATEST").read_text() == "step-00000003"
    assert not (tmp_path / "out" / "lora.safetensors").exists()

    resumed = train_lora(
        config,
        face_photos,
        output_dir=tmp_path / "out",
        device="cpu",
        cache_dir=model_cache,
        checkpoint_dir=checkpoints,
    )
    assert resumed.meta["resumed_from_step"] == 3
    assert_same_weights(reference.weights_path, resumed.weights_path)


def test_a_checkpoint_of_another_run_is_refused(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    config = TrainConfig(
        base_model="tiny-sd", steps=4, **{**RICH, "train_text_encoder": False, "prior_preservation": False}
    )
    checkpoints = tmp_path / "ckpt"
    with pytest.raises(TrainingInterrupted):
        train_lora(
            config,
            face_photos,
            output_dir=tmp_path / "a",
            device="cpu",
            cache_dir=model_cache,
            checkpoint_dir=checkpoints,
            should_stop=iter([False, False, True]).__next__,
        )
    with pytest.raises(CheckpointError, match="other settings"):
        train_lora(
            config.model_copy(update={"learning_rate": 5e-4}),
            face_photos,
            output_dir=tmp_path / "b",
            device="cpu",
            cache_dir=model_cache,
            checkpoint_dir=checkpoints,
        )
    with pytest.raises(CheckpointError, match="other photos"):
        train_lora(
            config,
            face_photos[:3],
            output_dir=tmp_path / "c",
            device="cpu",
            cache_dir=model_cache,
            checkpoint_dir=checkpoints,
        )
    assert not (tmp_path / "b" / "meta.json").exists() and not (tmp_path / "c" / "meta.json").exists()
