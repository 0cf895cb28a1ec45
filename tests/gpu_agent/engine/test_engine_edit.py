"""Instruction edits (InstructPix2Pix) on the tiny random model of the real architecture: an SD 1.x pipeline whose
UNet reads 8 channels (noisy latents + the picture's latents). Random weights draw noise, so the tests assert what
the code decides — that the picture and the instruction steer the result, that a member's LoRA is really active,
which LoRAs are refused — not how the pictures look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_agent.engine.edit import Editor, EditRequest, lora_fit
from gpu_agent.engine.models import BaseModelError
from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.render_types import BadRenderRequest, LoraLoadError, LoraRef
from gpu_agent.engine.tiny import build_tiny_ip2p, build_tiny_pipeline, save_tiny_lora


@pytest.fixture(scope="module")
def editor() -> Editor:
    return Editor("tiny-ip2p", device=torch.device("cpu"), dtype=torch.float32)


def picture(colour: tuple[int, int, int] = (200, 120, 60)) -> Image.Image:
    img = Image.new("RGB", (64, 64), colour)
    for x in range(0, 64, 8):
        for y in range(64):
            img.putpixel((x, y), (255, 255, 255))
    return img


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64)


def test_the_tiny_model_is_instructpix2pix_with_an_8_channel_unet() -> None:
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = build_tiny_ip2p()
    base = build_tiny_pipeline("tiny-sd")
    assert isinstance(pipe, StableDiffusionInstructPix2PixPipeline) and pipe.is_test_model
    assert pipe.unet.config.in_channels == 8 and pipe.unet.conv_in.weight.shape[1] == 8
    # Made from the SD 1.x model as the real one was: its first 4 input channels and every other layer kept.
    assert torch.equal(pipe.unet.conv_in.weight[:, :4], base.unet.conv_in.weight)
    assert torch.equal(
        pipe.unet.state_dict()["mid_block.attentions.0.proj_in.weight"],
        base.unet.state_dict()["mid_block.attentions.0.proj_in.weight"],
    )


def test_an_edit_is_steered_by_the_picture_and_the_instruction(editor: Editor) -> None:
    steps: list[tuple[int, int]] = []
    request = EditRequest("make it night", picture(), seed=3, steps=3)
    (night,) = editor.edit(request, progress=lambda s, t: steps.append((s, t)))
    assert night.image.size == (64, 64) and steps[-1] == (3, 3)
    (again,) = editor.edit(request)
    assert np.array_equal(pixels(night.image), pixels(again.image)), "same seed, same picture"
    (other_picture,) = editor.edit(EditRequest("make it night", picture((20, 200, 90)), seed=3, steps=3))
    (other_words,) = editor.edit(EditRequest("give him a red scarf", picture(), seed=3, steps=3))
    assert np.abs(pixels(night.image) - pixels(other_picture.image)).mean() > 1.0
    assert np.abs(pixels(night.image) - pixels(other_words.image)).mean() > 1.0
    params = read_png_params(night.png)
    assert params.mode == "edit" and params.prompt == "make it night" and params.guidance == 7.5
    assert "image guidance 1.5" in params.sampler


def test_image_guidance_changes_the_result(editor: Editor) -> None:
    (loose,) = editor.edit(EditRequest("make it night", picture(), seed=1, steps=2, image_guidance=1.0))
    (close,) = editor.edit(EditRequest("make it night", picture(), seed=1, steps=2, image_guidance=3.0))
    assert np.abs(pixels(loose.image) - pixels(close.image)).mean() > 0.5


def test_a_members_sd1_lora_is_active_during_the_edit_and_gone_after(editor: Editor, tmp_path: Path) -> None:
    lora = LoraRef("m1", save_tiny_lora("tiny-sd", tmp_path / "m1.safetensors", seed=1))
    fit = editor.check_lora(lora)
    assert fit.fits and fit.applied == fit.total == 64  # every attention layer of the UNet
    request = EditRequest("make it night", picture(), seed=2, steps=2)
    (bare,) = editor.edit(request)
    (with_face,) = editor.edit(request, lora)
    (bare_again,) = editor.edit(request)
    assert np.abs(pixels(bare.image) - pixels(with_face.image)).mean() > 1.0, "the LoRA changes the edit"
    assert np.array_equal(pixels(bare.image), pixels(bare_again.image)), "no LoRA leaks into the next edit"
    assert read_png_params(with_face.png).lora == "m1"


def test_a_lora_of_another_base_family_is_refused_before_any_work(editor: Editor, tmp_path: Path) -> None:
    sdxl = LoraRef("mx", save_tiny_lora("tiny-sdxl", tmp_path / "mx.safetensors", seed=1))
    calls: list[int] = []
    hook = editor.pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(LoraLoadError, match=r"edits use an SD 1\.5-family model") as err:
            editor.edit(EditRequest("make it night", picture(), steps=2), sdxl)
    finally:
        hook.remove()
    assert not calls and "mx" not in editor.adapters.resident_models
    assert "do not fit" in str(err.value) and str(tmp_path) not in str(err.value)


def test_lora_fit_names_the_sdxl_family_from_its_cross_attention_width() -> None:
    pipe = build_tiny_ip2p()
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora.down.weight"
    fit = lora_fit(pipe, {key: torch.zeros(4, 2048)})
    assert not fit.fits and fit.family == "SDXL" and "2048 wide" in fit.misfits[0]
    assert lora_fit(pipe, {"text_encoder_2.x.lora.down.weight": torch.zeros(4, 32)}).family == "SDXL"


def test_bad_edit_requests_are_refused_with_the_reason() -> None:
    with pytest.raises(BadRenderRequest, match="needs an instruction"):
        EditRequest("  ", picture())
    with pytest.raises(BadRenderRequest, match="image guidance"):
        EditRequest("make it night", picture(), image_guidance=0.5)
    with pytest.raises(BadRenderRequest, match="smaller than"):
        EditRequest("make it night", Image.new("RGB", (32, 32)))


def test_the_model_loads_from_a_folder_and_a_hub_id_missing_offline_names_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    folder = tmp_path / "ip2p"
    build_tiny_ip2p().save_pretrained(str(folder))
    loaded = Editor(str(folder), device=torch.device("cpu"), dtype=torch.float32)
    (out,) = loaded.edit(EditRequest("make it night", picture(), steps=2))
    assert out.image.size == (64, 64) and read_png_params(out.png).base_model == str(folder)

    not_ip2p = tmp_path / "sd"
    build_tiny_pipeline("tiny-sd").save_pretrained(str(not_ip2p))
    with pytest.raises(BaseModelError, match="not an InstructPix2Pix pipeline"):
        Editor(str(not_ip2p), device=torch.device("cpu"), dtype=torch.float32)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BaseModelError, match="hf download timbrooks/instruct-pix2pix"):
        Editor("timbrooks/instruct-pix2pix", device=torch.device("cpu"), cache_dir=tmp_path / "cache")
