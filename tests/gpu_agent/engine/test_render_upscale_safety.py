"""The U button's learned x4 upscaler and the base model's own safety checker, on tiny random models (CPU).

Real architectures with small random weights: diffusers' StableDiffusionUpscalePipeline (UNet over 7 channels,
three-level VAE, noise-level class embeddings) and diffusers' StableDiffusionSafetyChecker over a small CLIP
vision tower. Random weights draw noise, so the tests assert what the code decides — sizes, which network ran,
what is flagged — not how the pictures look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.render import SAFETY_CHECKER_MESSAGE, SAMPLER, Renderer
from gpu_agent.engine.render_types import RenderRequest
from gpu_agent.engine.tiny import build_tiny_pipeline
from gpu_agent.engine.upscale import fit_within


def source_picture(size: tuple[int, int] = (64, 64)) -> Image.Image:
    img = Image.new("RGB", size, (90, 140, 200))
    for x in range(0, size[0], 8):
        for y in range(size[1]):
            img.putpixel((x, y), (255, 255, 255))
    return img


def count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def upscale_request(**fields: Any) -> RenderRequest:
    values: dict[str, Any] = {
        "prompt": "photo of {subject}",
        "subject": "sks man",
        "seed": 5,
        "steps": 2,
        "mode": "upscale",
        "source": source_picture(),
    }
    values.update(fields)
    return RenderRequest(**values)


def test_learned_upscaler_draws_4x_with_its_own_network_and_refine_is_optional() -> None:
    renderer = Renderer("tiny-sd", dtype=torch.float32, upscaler_model="tiny-upscaler")
    assert renderer.upscaler is not None
    base_unet = count_calls(renderer.pipelines[0].unet)
    upscaler_unet = count_calls(renderer.upscaler.pipe.unet)
    steps: list[tuple[int, int]] = []

    (out,) = renderer.render(upscale_request(), progress=lambda step, total: steps.append((step, total)))
    assert out.image.size == (256, 256)  # 4x the 64 px source
    assert upscaler_unet and not base_unet, "a learned upscale, not a re-render with the base model"
    assert steps[-1] == (2, 2)
    params = read_png_params(out.png)
    assert params.sampler == "x4 upscaler tiny-upscaler" and params.mode == "upscale"
    assert params.strength is None and (params.width, params.height) == (256, 256)
    assert out.flagged is None

    two = renderer.render(upscale_request(n=2))  # picture i from seed + i, as in the other modes
    assert [o.seed for o in two] == [5, 6] and all(o.image.size == (256, 256) for o in two)

    # The optional refine: the base model's light re-denoise over the upscaled picture, size kept.
    renderer.upscale_refine = True
    upscaler_unet.clear()
    (refined,) = renderer.render(upscale_request())
    assert refined.image.size == (256, 256)
    assert upscaler_unet and base_unet
    assert read_png_params(refined.png).strength == pytest.approx(0.3)

    # Without a learned upscaler the fallback is the old one: Lanczos 2x and a re-denoise by the base model.
    renderer.upscaler = None
    base_unet.clear()
    (fallback,) = renderer.render(upscale_request())
    assert fallback.image.size == (128, 128) and base_unet
    assert read_png_params(fallback.png).sampler == SAMPLER


def test_an_upscaler_that_cannot_load_leaves_the_fallback(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    renderer = Renderer("tiny-sd", dtype=torch.float32, upscaler_model=str(tmp_path / "no-such-upscaler"))
    assert renderer.upscaler is None
    assert "upscaler not loaded" in caplog.text and "no such file or folder" in caplog.text
    (out,) = renderer.render(upscale_request())
    assert out.image.size == (128, 128)


def test_fit_within_keeps_the_aspect_under_both_caps() -> None:
    assert fit_within(Image.new("RGB", (2560, 2048)), 2048, 2048 * 2048).size == (2048, 1632)
    assert fit_within(Image.new("RGB", (2048, 2048)), 2048, 1024 * 1024).size == (1024, 1024)
    same = Image.new("RGB", (256, 192))
    assert fit_within(same, 2048, 2048 * 2048) is same


# --- the base model's own safety checker --------------------------------------------------------------------


def save_sd1_with_safety_checker(folder: Path, *, flags_everything: bool) -> Path:
    """A tiny SD-1.x folder laid out like a hub SD-1.x model: with diffusers' StableDiffusionSafetyChecker and
    its CLIP feature extractor. Its concept thresholds are set so that it flags every picture (or none): with
    random CLIP weights no real concept can be matched, so the threshold is the lever; the checker's code runs
    as is."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    tower = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    config = CLIPConfig(
        text_config=tower, vision_config={**tower, "image_size": 32, "patch_size": 4}, projection_dim=32
    )
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config).eval()
    if flags_everything:
        checker.concept_embeds_weights.data.fill_(-2.0)  # any cosine similarity is above -2
    extractor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_convert_rgb=True
    )
    pipe = build_tiny_pipeline("tiny-sd")
    pipe.register_modules(safety_checker=checker, feature_extractor=extractor)
    pipe.register_to_config(requires_safety_checker=True)
    pipe.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def checked_sd1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sd1_with_safety_checker(tmp_path_factory.mktemp("sd1-checked"), flags_everything=True)


def test_a_picture_the_safety_checker_blanks_is_flagged_not_delivered_silently(checked_sd1: Path) -> None:
    renderer = Renderer(str(checked_sd1), dtype=torch.float32)
    assert renderer.pipelines[0].safety_checker is not None  # loaded from the folder like a hub SD-1.x model
    first, second = renderer.render(
        RenderRequest("photo of {subject}", subject="sks man", n=2, width=64, height=64, steps=2)
    )
    for out in (first, second):
        assert out.flagged == SAFETY_CHECKER_MESSAGE
        assert not np.asarray(out.image).any()  # diffusers blanked it: a black square …
        assert read_png_params(out.png).flagged == SAFETY_CHECKER_MESSAGE  # … that says why


def test_a_safety_checker_that_passes_leaves_pictures_alone(tmp_path: Path) -> None:
    folder = save_sd1_with_safety_checker(tmp_path / "sd1-pass", flags_everything=False)
    renderer = Renderer(str(folder), dtype=torch.float32)
    (out,) = renderer.render(
        RenderRequest("photo of {subject}", subject="sks man", width=64, height=64, steps=2)
    )
    assert out.flagged is None and np.asarray(out.image).any()
