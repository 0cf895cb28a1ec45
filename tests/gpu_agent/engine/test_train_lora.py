"""train_lora on the tiny random models (CPU): it learns, its output loads into diffusers, every path runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from PIL import Image, ImageOps
from safetensors.torch import load_file

from gpu_agent.engine.models import cpu_has_native_bf16, load_base_pipeline
from gpu_agent.engine.training import LoraArtifact, TrainConfig, train_lora
from gpu_agent.engine.training.prior import class_image_dir

RES = 32
FAST = {
    "resolution": RES,
    "rank": 4,
    "learning_rate": 1e-3,
    "text_encoder_learning_rate": 1e-3,
    "prior_preservation": False,
    "train_text_encoder": False,
    "num_class_images": 2,
    "class_image_steps": 2,
}


@torch.no_grad()
def fixed_batch_loss(pipe, photos: list[Image.Image], prompt: str) -> float:
    """Denoising loss on a fixed batch computed here with diffusers alone, not with the trainer's code."""
    crops = [ImageOps.fit(p.convert("RGB"), (RES, RES)) for p in photos]
    pixels = pipe.image_processor.preprocess(crops, height=RES, width=RES)
    latents = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
    latents = latents.repeat_interleave(3, dim=0)
    timesteps = torch.tensor([150, 450, 750]).repeat(len(photos))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(7))
    embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
    noisy = DDPMScheduler.from_config(pipe.scheduler.config).add_noise(latents, noise, timesteps)
    prediction = pipe.unet(noisy, timesteps, embeds.expand(len(latents), -1, -1)).sample
    return F.mse_loss(prediction, noise).item()


def render(pipe, prompt: str = "a photo of sks person") -> bytes:
    return (
        pipe(prompt, num_inference_steps=2, height=RES, width=RES, generator=torch.Generator().manual_seed(0))
        .images[0]
        .tobytes()
    )


def test_training_lowers_the_loss_and_the_lora_loads_into_diffusers(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    # fp32 here on every machine; the bf16 path has its own test below
    config = TrainConfig(base_model="tiny-sd", steps=30, mixed_precision="no", eval_losses=True, **FAST)
    seen: list[tuple[int, int, float, float]] = []
    artifact = train_lora(
        config,
        face_photos,
        output_dir=tmp_path / "out",
        device="cpu",
        cache_dir=model_cache,
        progress=lambda *args: seen.append(args),
    )

    assert [s[0] for s in seen] == list(range(1, 31)) and {s[1] for s in seen} == {30}
    assert all(math.isfinite(s[2]) for s in seen) and seen[-1][3] == 0.0
    meta = artifact.meta
    assert meta["base_model"] == "tiny-sd" and meta["token"] == "sks" and meta["class_word"] == "person"
    assert meta["steps"] == 30 and meta["is_test_model"] is True and meta["family"] == "sd1"
    assert len(set(meta["photo_sha256"])) == 4 and meta["hyperparameters"]["learning_rate"] == 1e-3
    assert meta["eval_loss_trained"] < meta["eval_loss_base"]

    fresh = load_base_pipeline("tiny-sd", device="cpu", dtype=torch.float32, cache_dir=model_cache)
    before_loss, before_image = fixed_batch_loss(fresh, face_photos, "a photo of sks person"), render(fresh)
    fresh.load_lora_weights(str(artifact.weights_path))
    after_loss, after_image = fixed_batch_loss(fresh, face_photos, "a photo of sks person"), render(fresh)
    assert after_loss < before_loss, (before_loss, after_loss)
    assert after_image != before_image


def lora_keys(artifact: LoraArtifact) -> set[str]:
    return {key.split(".")[0] for key in load_file(artifact.weights_path)}


def test_text_encoder_lora_is_trained_saved_and_loaded(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    config = TrainConfig(base_model="tiny-sd", steps=6, **{**FAST, "train_text_encoder": True})
    artifact = train_lora(config, face_photos, output_dir=tmp_path, device="cpu", cache_dir=model_cache)
    assert lora_keys(artifact) == {"unet", "text_encoder"} and artifact.meta["text_encoder_trained"] is True

    fresh = load_base_pipeline("tiny-sd", device="cpu", dtype=torch.float32, cache_dir=model_cache)
    with torch.no_grad():
        before = fresh.encode_prompt("a photo of sks person", "cpu", 1, False)[0]
        fresh.load_lora_weights(str(artifact.weights_path))
        after = fresh.encode_prompt("a photo of sks person", "cpu", 1, False)[0]
    assert set(fresh.get_list_adapters()) == {"unet", "text_encoder"}
    assert not torch.equal(before, after)


def test_sdxl_trains_both_text_encoders_and_its_lora_loads(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    config = TrainConfig(
        base_model="tiny-sdxl", steps=4, class_word="woman", **{**FAST, "train_text_encoder": True}
    )
    artifact = train_lora(config, face_photos, output_dir=tmp_path, device="cpu", cache_dir=model_cache)
    assert artifact.meta["family"] == "sdxl" and math.isfinite(artifact.meta["final_loss"])
    assert lora_keys(artifact) == {"unet", "text_encoder", "text_encoder_2"}

    fresh = load_base_pipeline("tiny-sdxl", device="cpu", cache_dir=model_cache)
    before = render(fresh, "a photo of sks woman")
    fresh.load_lora_weights(str(artifact.weights_path))
    assert render(fresh, "a photo of sks woman") != before


def test_prior_preservation_renders_class_images_once_and_changes_training(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    cache = tmp_path / "cache"
    with_prior = TrainConfig(base_model="tiny-sd", steps=4, **{**FAST, "prior_preservation": True})
    first = train_lora(with_prior, face_photos, output_dir=tmp_path / "a", device="cpu", cache_dir=cache)
    folder = class_image_dir(cache, "tiny-sd", "a photo of person", RES, 2)
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 2 and all(Image.open(p).size == (RES, RES) for p in pngs)
    stamps = [p.stat().st_mtime_ns for p in pngs]

    # Another member with the same class word reuses the cached class images.
    other = with_prior.model_copy(update={"token": "ohwx"})
    train_lora(other, face_photos, output_dir=tmp_path / "b", device="cpu", cache_dir=cache)
    assert [p.stat().st_mtime_ns for p in sorted(folder.glob("*.png"))] == stamps

    without = with_prior.model_copy(update={"prior_preservation": False})
    plain = train_lora(without, face_photos, output_dir=tmp_path / "c", device="cpu", cache_dir=cache)
    a, c = load_file(first.weights_path), load_file(plain.weights_path)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights(
    tmp_path: Path,
    face_photos: list[Image.Image],
    model_cache: Path,
) -> None:
    config = TrainConfig(base_model="tiny-sd", steps=3, **FAST)
    runs = [
        train_lora(c, face_photos, output_dir=tmp_path / str(i), device="cpu", cache_dir=model_cache)
        for i, c in enumerate([config, config, config.model_copy(update={"seed": 1})])
    ]
    w = [load_file(r.weights_path) for r in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert any(not torch.equal(w[0][k], w[2][k]) for k in w[0])


@pytest.mark.parametrize(
    "options", [{"snr_gamma": None, "noise_offset": 0.1}, {"gradient_checkpointing": True}]
)
def test_loss_options_run(
    tmp_path: Path, face_photos: list[Image.Image], model_cache: Path, options: dict
) -> None:
    config = TrainConfig(base_model="tiny-sd", steps=2, **{**FAST, **options})
    artifact = train_lora(config, face_photos[:2], output_dir=tmp_path, device="cpu", cache_dir=model_cache)
    assert math.isfinite(artifact.meta["final_loss"]) and artifact.meta["optimizer"] == "AdamW"
    # "auto" on a CPU: bf16 only where the CPU computes it natively (emulated bf16 is slower than fp32)
    assert artifact.meta["mixed_precision"] == ("bf16" if cpu_has_native_bf16() else "no")


def test_bf16_on_a_cpu_learns_with_frozen_weights_bf16_and_lora_weights_fp32(
    tmp_path: Path, face_photos: list[Image.Image], model_cache: Path
) -> None:
    config = TrainConfig(base_model="tiny-sd", steps=30, mixed_precision="bf16", eval_losses=True, **FAST)
    pipe = load_base_pipeline("tiny-sd", device="cpu", cache_dir=model_cache)
    artifact = train_lora(
        config, face_photos, output_dir=tmp_path, device="cpu", cache_dir=model_cache, pipeline=pipe
    )
    assert artifact.meta["mixed_precision"] == "bf16"
    assert artifact.meta["eval_loss_trained"] < artifact.meta["eval_loss_base"]
    frozen = {p.dtype for p in pipe.unet.parameters() if not p.requires_grad}
    trained = {p.dtype for p in pipe.unet.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    saved = load_file(artifact.weights_path)
    assert saved and {t.dtype for t in saved.values()} == {torch.float32}


def test_by_default_no_evaluation_after_the_last_step_losses_read_sparsely_and_phases_timed(
    tmp_path: Path, face_photos: list[Image.Image], model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpu_agent.engine.training import trainer

    def no_eval(self: object) -> tuple[float, float]:
        raise AssertionError("evaluated although eval_losses is off")

    monkeypatch.setattr(trainer._Run, "eval_losses", no_eval)
    config = TrainConfig(base_model="tiny-sd", steps=12, loss_every=5, mixed_precision="no", **FAST)
    seen: list[tuple[int, int, float, float]] = []
    artifact = train_lora(
        config,
        face_photos,
        output_dir=tmp_path / "out",
        device="cpu",
        cache_dir=model_cache,
        progress=lambda *args: seen.append(args),
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert artifact.meta["eval_loss_base"] is None and artifact.meta["eval_loss_trained"] is None
    losses = [s[2] for s in seen]
    # read at steps 1, 5, 10 and 12; in between progress repeats the last loss read
    assert losses[0] == losses[1] == losses[3] and losses[4] == losses[8] and losses[9] == losses[10]
    assert len({losses[0], losses[4], losses[9], losses[11]}) == 4
    phases = artifact.timings
    assert list(phases)[:4] == ["model_load", "class_images", "caching", "setup"]
    assert {"steps", "eval", "save", "checkpoints"} <= set(phases)
    assert all(v >= 0 for v in phases.values()) and phases["steps"] > phases["eval"]


def test_compile_and_channels_last_are_wired_to_the_step_and_the_maths_stays(
    tmp_path: Path, face_photos: list[Image.Image], model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compiling for real costs minutes on a CPU: torch.compile is recorded and handed back the module, which
    # checks the wiring (the step runs through what compile returned) but not inductor itself.
    compiled: list[torch.nn.Module] = []

    class Compiled(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.calls = module, 0

        def forward(self, *args: object, **kwargs: object) -> object:
            self.calls += 1
            return self.inner(*args, **kwargs)

    def fake_compile(module: torch.nn.Module) -> torch.nn.Module:
        wrapper = Compiled(module)
        compiled.append(wrapper)
        return wrapper

    monkeypatch.setattr(torch, "compile", fake_compile)
    weights = {}
    for knobs in (
        {"compile_unet": "off", "channels_last": "off"},
        {"compile_unet": "on", "channels_last": "on"},
    ):
        config = TrainConfig(base_model="tiny-sd", steps=3, mixed_precision="no", **knobs, **FAST)
        pipe = load_base_pipeline("tiny-sd", device="cpu", dtype=torch.float32, cache_dir=model_cache)
        artifact = train_lora(
            config, face_photos, output_dir=tmp_path / knobs["compile_unet"], device="cpu", pipeline=pipe
        )
        conv = pipe.unet.conv_in.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == (knobs["channels_last"] == "on")
        weights[knobs["compile_unet"]] = load_file(artifact.weights_path)
    assert len(compiled) == 1 and compiled[0].calls == 3  # one compile, every training step through it
    # same maths: the layout and the (stand-in) compile change no weight beyond rounding
    assert weights["on"].keys() == weights["off"].keys()
    for key, value in weights["off"].items():
        torch.testing.assert_close(weights["on"][key], value, rtol=1e-4, atol=1e-5)
