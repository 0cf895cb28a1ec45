"""Previews while a picture is being made: a small sample during training, the latents during rendering.

Real tiny SD/SDXL models on the CPU; the pictures are noise-like (random weights) but real pixels of the real run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gpu_agent.engine.preview import PreviewPlan, jpeg_bytes, latents_to_image
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import RenderRequest
from gpu_agent.engine.training import TrainConfig, train_lora

FAST = {
    "resolution": 32,
    "rank": 4,
    "learning_rate": 1e-3,
    "prior_preservation": False,
    "num_class_images": 2,
    "class_image_steps": 2,
    "mixed_precision": "no",
}


def test_latents_to_image_follows_the_sd_colour_factors() -> None:
    # a latent that is +1 on channel 0 only: the SD factors make it warm grey (r > b), and channel 3 makes it
    # yellow-ish (blue pulled down most)
    latent = torch.zeros(4, 8, 8)
    latent[3] = 1.0
    image = latents_to_image(latent, "sd1", edge=64)
    r, g, b = image.getpixel((10, 10))
    assert image.size == (64, 64) and b < g < r
    # other channel counts (the tiny models) still give a picture of the right size
    odd = latents_to_image(torch.randn(1, 5, 4, 6), "sd1", edge=60)
    assert odd.size == (60, 40) and odd.mode == "RGB"
    assert jpeg_bytes(odd)[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("base", ["tiny-sd", "tiny-sdxl"])
def test_training_previews_come_every_k_steps_and_change_nothing(
    base: str, tmp_path: Path, face_photos: list[Image.Image], model_cache: Path
) -> None:
    config = TrainConfig(base_model=base, steps=6, train_text_encoder=base == "tiny-sd", **FAST)
    previews: list[tuple[int, Image.Image]] = []
    asked: list[int] = []

    def due() -> bool:
        asked.append(1)
        return len(asked) != 2  # the agent's throttle says no once: that preview is skipped

    plain = train_lora(
        config, face_photos, output_dir=tmp_path / "plain", device="cpu", cache_dir=model_cache
    )
    with_previews = train_lora(
        config,
        face_photos,
        output_dir=tmp_path / "previews",
        device="cpu",
        cache_dir=model_cache,
        preview=PreviewPlan(
            deliver=lambda step, _total, image: previews.append((step, image)),
            due=due,
            every_steps=2,
            size=32,
            steps=2,
        ),
    )

    # steps 2 and 4 ask (6 is the end: the result follows), the second ask was refused
    assert [step for step, _ in previews] == [2] and len(asked) == 2
    assert previews[0][1].mode == "RGB" and max(previews[0][1].size) == 256
    assert len(previews[0][1].getcolors(maxcolors=1 << 16) or [0, 0]) > 1  # a picture, not a flat square
    a, b = load_file(plain.weights_path), load_file(with_previews.weights_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_render_previews_come_from_the_latents_when_due(model_cache: Path) -> None:
    renderer = Renderer("tiny-sd", device="cpu", cache_dir=model_cache, dtype=torch.float32)
    request = RenderRequest(
        prompt="a photo of {subject}", subject="sks person", seed=3, n=1, width=64, height=64, steps=4
    )
    previews: list[tuple[int, Image.Image]] = []
    gate = iter([True, False, True, True])
    plain = renderer.render(request)
    shown = renderer.render(
        request, preview=PreviewPlan(deliver=lambda s, _t, i: previews.append((s, i)), due=lambda: next(gate))
    )
    assert [step for step, _ in previews] == [1, 3]  # the last step is the result itself: no preview
    assert all(image.mode == "RGB" for _, image in previews)
    assert plain[0].png == shown[0].png  # previews change nothing in the picture
