"""Group pictures on the tiny random models (CPU): the pose ControlNet, CLIPSeg and the masked re-denoising
(diffusers' StableDiffusionInpaintPipeline over the base's own 4-channel UNet) really run, and no member's LoRA
reaches another member's region, to the exact pixel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionInpaintPipeline
from PIL import Image
from transformers import CLIPSegForImageSegmentation

from gpu_agent.engine.group.components import Segmenter, load_controlnet
from gpu_agent.engine.group.compose import GroupComposer, GroupConfig, GroupMemberLora, GroupRequest
from gpu_agent.engine.models import BaseModelError
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import BadRenderRequest, LoraLoadError, LoraRef
from gpu_agent.engine.tiny import save_tiny_lora

TINY = GroupConfig(controlnet_model="tiny-controlnet", segmenter_model="tiny-clipseg")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def composer() -> GroupComposer:
    return GroupComposer(Renderer("tiny-sd", device="cpu", max_resident=4), TINY)


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoraRef]:
    root = tmp_path_factory.mktemp("group-loras")
    out = {
        name: LoraRef(f"model-{name}", save_tiny_lora("tiny-sd", root / name / "lora.safetensors", seed=seed))
        for name, seed in (("a", 1), ("b", 2), ("c", 3), ("d", 4))
    }
    out["xl"] = LoraRef("model-xl", save_tiny_lora("tiny-sdxl", root / "xl" / "lora.safetensors", seed=5))
    return out


def group(
    loras: dict[str, LoraRef], *names: str, layout: str | None = None, **fields: object
) -> GroupRequest:
    subjects = ["sks man", "ohwx woman", "zwx person", "sks woman"]
    members = tuple(GroupMemberLora(loras[n], subjects[i]) for i, n in enumerate(names))
    values: dict[str, object] = {"width": 128, "height": 64, "steps": 4, "seed": 7, "guidance": 5.0}
    values.update(fields)
    return GroupRequest("photo of {subject} at the eiffel tower", members, layout, **values)  # type: ignore[arg-type]


def test_the_stages_run_on_the_real_architectures(composer: GroupComposer) -> None:
    assert isinstance(composer.controlnet, ControlNetModel)
    assert isinstance(composer.segmenter.model, CLIPSegForImageSegmentation)
    assert isinstance(composer._posed, StableDiffusionControlNetPipeline)
    assert isinstance(composer._inpaint, StableDiffusionInpaintPipeline)
    txt2img, _ = composer.renderer.pipelines
    assert composer._inpaint.unet is txt2img.unet and composer._posed.unet is txt2img.unet  # loaded once
    heat = composer.segmenter.heat(Image.new("RGB", (96, 64), (120, 80, 40)), "a person")
    assert heat.shape == (64, 96) and heat.min() >= 0 and heat.max() <= 1


def test_replacing_member_b_lora_leaves_member_a_region_unchanged(
    composer: GroupComposer, loras: dict[str, LoraRef]
) -> None:
    (with_b,) = composer.render(group(loras, "a", "b"))
    (with_c,) = composer.render(group(loras, "a", "c"))
    a_region, b_region = with_b.regions
    assert [r.sum() for r in with_b.regions] == [r.sum() for r in with_c.regions]
    before_b, before_c = np.asarray(with_b.before_harmonise), np.asarray(with_c.before_harmonise)
    assert (before_b[a_region] == before_c[a_region]).all()  # A's region: the exact same pixels
    assert (before_b[b_region] != before_c[b_region]).any()  # B's region: drawn by the other LoRA
    nobody = ~(a_region | b_region)
    assert (before_b[nobody] == before_c[nobody]).all()  # the rest: the base render, no LoRA at all
    assert np.asarray(with_b.base).tobytes() == np.asarray(with_c.base).tobytes()
    # ... and A's region is A's LoRA's work: with another LoRA in A's place it changes.
    (other_a,) = composer.render(group(loras, "d", "b"))
    assert (np.asarray(other_a.before_harmonise)[a_region] != before_b[a_region]).any()
    assert with_b.rendered.params.lora == "model-a,model-b" and with_b.rendered.params.mode == "group"


def test_the_pose_layout_steers_the_base_render(composer: GroupComposer, loras: dict[str, LoraRef]) -> None:
    (row,) = composer.render(group(loras, "a", "b", layout="row", n=1))
    (stage,) = composer.render(group(loras, "a", "b", layout="stage", n=1))
    assert row.base.tobytes() != stage.base.tobytes()


def test_several_pictures_and_four_members(composer: GroupComposer, loras: dict[str, LoraRef]) -> None:
    steps: list[tuple[int, int]] = []
    pictures = composer.render(
        group(loras, "a", "b", "c", "d", layout="table", n=2),
        progress=lambda done, total: steps.append((done, total)),
    )
    assert [p.rendered.seed for p in pictures] == [7, 8]
    assert all(len(p.regions) == 4 and len(p.boxes) == 4 for p in pictures)
    assert steps[-1][0] == steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert sorted(composer.renderer.resident_models) == ["model-a", "model-b", "model-c", "model-d"]


def test_members_of_different_base_families_are_refused(
    composer: GroupComposer, loras: dict[str, LoraRef]
) -> None:
    with pytest.raises(BadRenderRequest, match="trained on different base models"):
        composer.render(group(loras, "a", "xl"))
    assert "model-xl" not in composer.renderer.resident_models  # refused before any LoRA was loaded
    with pytest.raises(BadRenderRequest, match="not available"):
        composer.render(group(loras, "a", "b", layout="beach"))


def test_a_group_of_another_family_than_the_base_is_refused(
    tmp_path: Path, loras: dict[str, LoraRef]
) -> None:
    other = LoraRef("model-xl2", save_tiny_lora("tiny-sdxl", tmp_path / "xl2.safetensors", seed=6))
    renderer = Renderer("tiny-sd", device="cpu")
    composer = GroupComposer(renderer, TINY)
    with pytest.raises(LoraLoadError, match="not on this server's base model"):
        composer.render(
            GroupRequest(
                "photo of {subject}",
                (GroupMemberLora(loras["xl"], "sks man"), GroupMemberLora(other, "ohwx man")),
                width=128,
                height=64,
                steps=2,
            )
        )


def test_hub_models_missing_offline_name_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    unet = Renderer("tiny-sd", device="cpu").pipelines[0].unet
    with pytest.raises(BaseModelError, match="hf download lllyasviel/sd-controlnet-openpose"):
        load_controlnet("lllyasviel/sd-controlnet-openpose", unet, cache_dir=tmp_path)
    with pytest.raises(BaseModelError, match="hf download CIDAS/clipseg-rd64-refined"):
        Segmenter.load("CIDAS/clipseg-rd64-refined", device=torch.device("cpu"), cache_dir=tmp_path)


def test_an_sdxl_base_composes_with_its_own_controlnet_and_inpainting(tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLInpaintPipeline

    composer = GroupComposer(Renderer("tiny-sdxl", device="cpu"), TINY)
    assert isinstance(composer._posed, StableDiffusionXLControlNetPipeline)
    assert isinstance(composer._inpaint, StableDiffusionXLInpaintPipeline)
    members = tuple(
        GroupMemberLora(
            LoraRef(f"xl-{i}", save_tiny_lora("tiny-sdxl", tmp_path / f"{i}.safetensors", seed=i)), "sks man"
        )
        for i in (1, 2)
    )
    (picture,) = composer.render(GroupRequest("photo of {subject}", members, width=128, height=64, steps=2))
    assert picture.rendered.image.size == (128, 64) and picture.rendered.params.lora == "xl-1,xl-2"


def _mean_distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_a_variation_starts_from_the_chosen_picture(
    composer: GroupComposer, loras: dict[str, LoraRef]
) -> None:
    """V on a group picture: an img2img of that picture (no member LoRA) replaces the new base render, then the
    per-member passes and the harmonisation run as usual. The tiny random VAE garbles every picture it encodes
    (see test_render's variation test), so nearness is measured where the source passed through it once: the
    variation's starting picture, against an unrelated render's with the same seed."""
    (chosen,) = composer.render(group(loras, "a", "b", seed=7))
    source = chosen.rendered.image
    (variation,) = composer.render(group(loras, "a", "b", seed=99, source=source))
    (unrelated,) = composer.render(group(loras, "a", "b", seed=99))
    assert _mean_distance(variation.base, source) < 0.95 * _mean_distance(unrelated.base, source)
    assert variation.rendered.params.strength == 0.6 and unrelated.rendered.params.strength is None
    (other,) = composer.render(group(loras, "a", "b", seed=99, source=unrelated.rendered.image))
    assert (
        variation.rendered.image.tobytes() != other.rendered.image.tobytes()
    )  # the source reaches the result
    # The per-member passes still ran, each with only its member's LoRA: B's replacement leaves A's region.
    (with_c,) = composer.render(group(loras, "a", "c", seed=99, source=source))
    a_region, b_region = variation.regions
    before, before_c = np.asarray(variation.before_harmonise), np.asarray(with_c.before_harmonise)
    assert (before[a_region] == before_c[a_region]).all() and (before[b_region] != before_c[b_region]).any()
    with pytest.raises(BadRenderRequest, match="strength is for a variation"):
        group(loras, "a", "b", strength=0.5)


def test_the_pose_controlnet_is_skipped_past_pose_until_with_the_same_pixels(
    composer: GroupComposer, loras: dict[str, LoraRef]
) -> None:
    from diffusers import ControlNetModel

    calls: list[float] = []
    plain = ControlNetModel.from_config(composer.controlnet.config)
    plain.load_state_dict(composer.controlnet.state_dict())
    plain.register_forward_pre_hook(
        lambda _m, _a, kw: calls.append(kw["conditioning_scale"]), with_kwargs=True
    )
    skipped_calls: list[float] = []
    hook = composer.controlnet.register_forward_pre_hook(
        lambda _m, _a, kw: skipped_calls.append(kw["conditioning_scale"]), with_kwargs=True
    )
    try:
        (skipping,) = composer.render(group(loras, "a", "b", steps=4))
    finally:
        hook.remove()
    # The same base render with diffusers' own behaviour: the ControlNet runs at every step, times 0 after 50 %.
    unskipped = GroupComposer(composer.renderer, TINY, controlnet=plain, segmenter=composer.segmenter)
    unskipped.controlnet.forward = type(plain).forward.__get__(plain)
    (full,) = unskipped.render(group(loras, "a", "b", steps=4))
    assert calls == [1.0, 1.0, 0.0, 0.0]
    assert skipped_calls == calls  # called, but the last two return zeros without running
    assert np.asarray(skipping.base).tobytes() == np.asarray(full.base).tobytes()


def test_the_face_pass_redraws_each_members_real_face_only_when_asked(
    faces_dir: Path, loras: dict[str, LoraRef]
) -> None:
    """The tiny models draw no faces, so real face photos are pasted where the layout puts heads (the stand-in
    for a real model); the face pass then finds one in each member's region and redraws it with their LoRA."""
    from gpu_agent.engine.face_detail import FaceDetailConfig
    from gpu_agent.engine.group.face_stand_in import face_crops, paste_faces

    photos = [Image.open(faces_dir / name) for name in ("astronaut.png", "messi5.jpg")]
    renderer = Renderer("tiny-sd", device="cpu", face_detail=FaceDetailConfig(max_share=0.25, upsample=2))
    composer = GroupComposer(renderer, TINY, people=paste_faces(face_crops(photos), 32))
    (detailed,) = composer.render(group(loras, "a", "b", face_detail=True))
    (plain,) = composer.render(group(loras, "a", "b", face_detail=False))
    assert detailed.faces == [True, True] and detailed.rendered.params.face_detail == 2
    assert plain.faces == [False, False] and plain.rendered.params.face_detail is None
    before_detailed, before_plain = np.asarray(detailed.before_harmonise), np.asarray(plain.before_harmonise)
    for k, (left, top, right, bottom) in enumerate(detailed.boxes):
        inside = detailed.regions[k][top:bottom, left:right]
        face_d, face_p = before_detailed[top:bottom, left:right], before_plain[top:bottom, left:right]
        assert (face_d[inside] != face_p[inside]).any()  # their face, redrawn


def test_the_group_face_pass_redraws_at_the_faces_size_and_the_group_face_strength(
    faces_dir: Path, loras: dict[str, LoraRef]
) -> None:
    """The face pass's img2img gets each face's crop at the side redraw_side gives (here the crop's own
    resolution: the pasted faces are a third of the tiny model's 64 px native side, more than the 0.3 the
    face needs), not always upsampled to the native size, and runs at the group's face strength."""
    from gpu_agent.engine.face_detail import FaceDetailConfig
    from gpu_agent.engine.group.face_stand_in import face_crops, paste_faces

    photos = [Image.open(faces_dir / name) for name in ("astronaut.png", "messi5.jpg")]
    renderer = Renderer("tiny-sd", device="cpu", face_detail=FaceDetailConfig(max_share=0.25, upsample=2))
    config = GroupConfig(
        controlnet_model="tiny-controlnet", segmenter_model="tiny-clipseg", face_strength=0.25
    )
    composer = GroupComposer(renderer, config, people=paste_faces(face_crops(photos), 32))
    calls: list[dict[str, object]] = []

    class Recording:
        """The img2img pipeline, its calls' arguments recorded."""

        def __init__(self, pipe: object) -> None:
            self.pipe = pipe

        def __getattr__(self, name: str) -> object:
            return getattr(self.pipe, name)

        def __call__(self, **kwargs: object) -> object:
            calls.append(kwargs)
            return self.pipe(**kwargs)  # type: ignore[operator]

    composer._img2img = Recording(composer._img2img)
    (picture,) = composer.render(group(loras, "a", "b", steps=8, face_detail=True))
    faces = [c for c in calls if str(c["prompt"]).startswith("close-up photo of")]
    assert picture.faces == [True, True] and len(faces) == 2
    native = renderer.pipelines[1].unet.config.sample_size * renderer.pipelines[1].vae_scale_factor
    for call, (left, _, right, _) in zip(faces, picture.boxes, strict=True):
        image = call["image"]
        assert isinstance(image, Image.Image)
        assert image.width == image.height == -(-(right - left) // 8) * 8 < native
        assert call["strength"] == 0.25 and call["num_inference_steps"] == 8  # 2 of the 8 steps run


def test_the_group_face_strength_is_a_setting() -> None:
    from storage.settings import load_settings

    settings = load_settings(group_face_strength=0.35)
    assert GroupConfig.from_settings(settings).face_strength == 0.35
    with pytest.raises(ValueError, match="face_strength"):
        GroupConfig(face_strength=0)


def _unet_batches(composer: GroupComposer) -> tuple[list[tuple[int, int, int]], object]:
    """(rows, latent height, latent width) of every UNet call, and the hook's handle."""
    calls: list[tuple[int, int, int]] = []

    def record(_module: object, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        calls.append((x.shape[0], x.shape[-2], x.shape[-1]))

    return calls, composer._inpaint.unet.register_forward_pre_hook(record)


def test_the_members_regions_are_redrawn_in_one_denoising_batch(
    composer: GroupComposer, loras: dict[str, LoraRef]
) -> None:
    calls, handle = _unet_batches(composer)
    try:
        (picture,) = composer.render(group(loras, "a", "b", "c", layout="row", face_detail=False))
    finally:
        handle.remove()  # type: ignore[attr-defined]
    factor = composer._inpaint.vae_scale_factor
    full = (64 // factor, 128 // factor)
    crops = [c for c in calls if c[1:] != full]
    # the base render's and the harmonisation's calls are of the whole picture; the members' of their crops:
    # 3 members x (unconditional, conditional) rows in every step of one batch, not three calls
    assert crops and all(rows == 2 * 3 for rows, _, _ in crops)
    assert len(picture.regions) == 3


def test_more_members_than_resident_loras_are_redrawn_in_batches_that_fit(
    loras: dict[str, LoraRef],
) -> None:
    composer = GroupComposer(Renderer("tiny-sd", device="cpu", max_resident=2), TINY)
    calls, handle = _unet_batches(composer)
    steps: list[tuple[int, int]] = []
    try:
        (picture,) = composer.render(
            group(loras, "a", "b", "c", face_detail=False),
            progress=lambda done, total: steps.append((done, total)),
        )
    finally:
        handle.remove()  # type: ignore[attr-defined]
    factor = composer._inpaint.vae_scale_factor
    crop_rows = sorted({rows for rows, h, w in calls if (h, w) != (64 // factor, 128 // factor)})
    assert crop_rows == [2, 4]  # a batch of two members, then one of the third
    assert steps[-1][0] == steps[-1][1]  # the progress total counts both batches
    assert len(picture.regions) == 3 and sorted(composer.renderer.resident_models) in (
        ["model-b", "model-c"],
        ["model-a", "model-c"],
    )
