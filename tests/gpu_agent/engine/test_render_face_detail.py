"""The face-detail pass inside the Renderer, on the tiny random model (CPU), with a member's LoRA.

What is real and what stands in: the tiny random model draws noise, never a face, so the face detector
would have nothing to find in its txt2img output. ``PhotoRenderer`` therefore hands a real photo (the
astronaut's portrait shrunk onto a 512 x 768 canvas, like a full-body render) to the rest of the render flow
in place of the txt2img pictures: that one method is the stand-in. Everything after it is real: dlib's
detector, the crop, the img2img of the crop on the tiny model with the member's LoRA active, the paste back,
the image check, the PNG metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from test_render import make_lora

from cloud.messages import RenderJob
from gpu_agent.engine.face_detail import FaceDetailConfig, find_faces, region_mask
from gpu_agent.engine.pngmeta import read_png_params
from gpu_agent.engine.presets import get_preset
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import LoraRef, RenderedImage, RenderRequest


class PhotoRenderer(Renderer):
    """The Renderer with its txt2img output replaced by real photos (the stand-in; see the module doc)."""

    photo: Image.Image

    def _denoise(self, request: RenderRequest, *args: Any) -> tuple[list[Image.Image], list[bool]]:
        return [self.photo.copy() for _ in range(request.n)], [False] * request.n  # (pictures, none blanked)


def _scene(faces_dir: Path, side: int) -> Image.Image:
    scene = Image.new("RGB", (512, 768), (96, 128, 160))
    with Image.open(faces_dir / "astronaut.png") as portrait:
        scene.paste(portrait.convert("RGB").resize((side, side), Image.Resampling.LANCZOS), (150, 300))
    return scene


@pytest.fixture(scope="module")
def renderer() -> Iterator[PhotoRenderer]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from a second thread on a shared CPU
    yield PhotoRenderer("tiny-sd", device="cpu", max_resident=2)
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def member_loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoraRef]:
    out = {}
    for name, seed in (("a", 1), ("c", 3)):
        folder = tmp_path_factory.mktemp(f"lora-{name}")
        out[name] = LoraRef(f"model-{name}", make_lora("tiny-sd", folder, seed))
    return out


def _request(face_detail: bool, **kw: Any) -> RenderRequest:
    return RenderRequest(
        "travel photo of {subject} in Rome",
        subject="sks woman",
        seed=5,
        width=512,
        height=768,
        steps=4,
        guidance=6.0,
        face_detail=face_detail,
        **kw,
    )


def _render(
    renderer: PhotoRenderer, photo: Image.Image, request: RenderRequest, lora: LoraRef | None
) -> list[RenderedImage]:
    renderer.photo = photo
    return renderer.render(request, lora)


def test_face_detail_changes_only_the_pixels_inside_the_face_mask(
    renderer: PhotoRenderer, member_loras: dict[str, LoraRef], faces_dir: Path
) -> None:
    photo = _scene(faces_dir, 256)
    config = renderer.face_detail
    regions = find_faces(photo, config)
    assert len(regions) == 1, "the real photo has one small face"

    (off,) = _render(renderer, photo, _request(False), member_loras["a"])
    (on,) = _render(renderer, photo, _request(True), member_loras["a"])

    assert off.image.tobytes() == photo.tobytes(), "without the pass the picture is what was drawn"
    a, b = np.asarray(off.image), np.asarray(on.image)
    inside = region_mask(photo.size, regions, config.feather)
    assert (a[~inside] == b[~inside]).all(), "outside the face mask not one pixel changed"
    changed = (a != b).any(axis=2)
    assert changed[inside].mean() > 0.5, "the face region was redrawn"

    # The PNG says that the pass ran and how many faces it redrew; without it, nothing is claimed.
    assert on.params.face_detail == 1 and read_png_params(on.png).face_detail == 1
    assert "Face detail: 1" in on.params.a1111()
    assert off.params.face_detail is None and read_png_params(off.png).face_detail is None


def test_face_detail_uses_the_members_lora_and_the_pictures_seed(
    renderer: PhotoRenderer, member_loras: dict[str, LoraRef], faces_dir: Path
) -> None:
    photo = _scene(faces_dir, 256)
    request = _request(True, n=2)
    with_a = _render(renderer, photo, request, member_loras["a"])
    with_c = _render(renderer, photo, request, member_loras["c"])
    bare = _render(renderer, photo, request, None)
    again_a = _render(renderer, photo, request, member_loras["a"])

    assert [r.image.tobytes() for r in with_a] == [r.image.tobytes() for r in again_a], "reproducible"
    # The member's LoRA is active in the face pass: another member's, or none, redraws the face differently.
    assert len({with_a[0].image.tobytes(), with_c[0].image.tobytes(), bare[0].image.tobytes()}) == 3
    # Picture i's face is redrawn from picture i's seed: two pictures of one photo get two different faces.
    assert with_a[0].image.tobytes() != with_a[1].image.tobytes()
    assert [r.seed for r in with_a] == [5, 6]


def test_a_close_up_face_is_not_redrawn(
    renderer: PhotoRenderer, member_loras: dict[str, LoraRef], faces_dir: Path
) -> None:
    with Image.open(faces_dir / "astronaut.png") as portrait:
        headshot = portrait.convert("RGB").crop((120, 20, 360, 260)).resize((512, 512))
    (out,) = _render(renderer, headshot, _request(True), member_loras["a"])
    assert out.image.tobytes() == headshot.tobytes()
    assert out.params.face_detail == 0  # it ran, and found no face small enough to redo


def test_settings_reach_the_renderer_config() -> None:
    from storage.settings import load_settings

    settings = load_settings(
        render_face_detail_max_share=0.02, render_face_detail_max_faces=1, render_face_detail_strength=0.3
    )
    assert FaceDetailConfig.from_settings(settings) == FaceDetailConfig(
        max_share=0.02, max_faces=1, strength=0.3
    )


def test_the_job_and_the_preset_carry_the_flag() -> None:
    job = RenderJob(job_id="j1", order_id="o1", user_id="1", base_model="tiny-sd", prompt="{subject} in Rome")
    assert job.face_detail is False  # a message from before the field renders as it did
    assert RenderRequest.from_job(job.model_copy(update={"face_detail": True})).face_detail is True
    assert RenderRequest.from_preset(get_preset("eiffel-tower"), "sks man").face_detail is True
    assert RenderRequest.from_preset(get_preset("headshot"), "sks man").face_detail is False


def test_the_pass_runs_on_an_sdxl_shaped_pipeline(faces_dir: Path) -> None:
    sdxl = PhotoRenderer("tiny-sdxl", device="cpu")
    photo = _scene(faces_dir, 256)
    regions = find_faces(photo, sdxl.face_detail)
    (on,) = _render(sdxl, photo, _request(True), None)
    a, b = np.asarray(photo), np.asarray(on.image)
    inside = region_mask(photo.size, regions, sdxl.face_detail.feather)
    assert (a[~inside] == b[~inside]).all() and (a != b).any(axis=2)[inside].mean() > 0.5
    assert on.params.face_detail == 1
