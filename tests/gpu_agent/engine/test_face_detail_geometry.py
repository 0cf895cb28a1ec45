"""Face detail's geometry on real photos (dlib's real detector, no torch): which faces are redone, the square
crop around each, the feathered mask and the paste back that leaves every pixel outside the mask as it was.

The scenes are real face photos (tests/data/faces) pasted small onto a plain canvas, which is what a full-body
or landmark render looks like to the detector: a face of 35-45 px in a 512 x 768 picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from gpu_agent.engine.face_detail import (
    FaceDetailConfig,
    feather_mask,
    find_faces,
    paste_back,
    redraw_side,
    region_mask,
    square_box,
)
from gpu_agent.photos.faces import Face, detect_faces, detection_copy

ASTRONAUT_AT = (150, 300)
ASTRONAUT_SIDE = 256


def _photo(faces_dir: Path, name: str) -> Image.Image:
    with Image.open(faces_dir / name) as img:
        return img.convert("RGB")


def _canvas(size: tuple[int, int] = (512, 768)) -> Image.Image:
    # A soft vertical gradient, so a paste that moved pixels by one would show.
    w, h = size
    ramp = np.linspace(60, 200, h, dtype=np.float64)[:, None, None] * np.ones((1, w, 3))
    ramp[..., 2] = 255 - ramp[..., 2]
    return Image.fromarray(ramp.astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def full_body(faces_dir: Path) -> Image.Image:
    """The astronaut's portrait shrunk to 256 px and placed on a 512 x 768 canvas: a face of about 45 px."""
    scene = _canvas()
    small = _photo(faces_dir, "astronaut.png").resize((ASTRONAUT_SIDE,) * 2, Image.Resampling.LANCZOS)
    scene.paste(small, ASTRONAUT_AT)
    return scene


def _expected_face(faces_dir: Path) -> tuple[float, float, float, float]:
    """Where the face is in the scene, from detecting it in the full-size portrait (not in the scene)."""
    portrait = _photo(faces_dir, "astronaut.png")
    (face,), _ = detect_faces(*detection_copy(portrait, 1024), 0)
    k = ASTRONAUT_SIDE / portrait.width
    x, y = ASTRONAUT_AT
    return (
        x + face.left * k,
        y + face.top * k,
        x + (face.left + face.width) * k,
        y + (face.top + face.height) * k,
    )


def test_small_face_is_found_with_a_square_box_around_it(full_body: Image.Image, faces_dir: Path) -> None:
    config = FaceDetailConfig()
    (region,) = find_faces(full_body, config)
    left, top, right, bottom = region.box
    assert right - left == bottom - top == region.side
    assert left >= 0 and top >= 0 and right <= full_body.width and bottom <= full_body.height
    # The box holds the face as the full-size portrait places it, with room to spare (the margin).
    fl, ft, fr, fb = _expected_face(faces_dir)
    assert left <= fl and top <= ft and right >= fr and bottom >= fb, (region.box, (fl, ft, fr, fb))
    assert region.side == pytest.approx(config.margin * region.face.size, abs=1)
    # The face is small: that is why it is redone.
    assert region.face.width * region.face.height < config.max_share * full_body.width * full_body.height


def test_close_up_face_is_left_alone(faces_dir: Path) -> None:
    headshot = _photo(faces_dir, "astronaut.png").crop((120, 20, 360, 260)).resize((512, 512))
    faces, _ = detect_faces(*detection_copy(headshot, 1024), 1)
    assert faces, "the detector sees the close-up's face"
    assert find_faces(headshot, FaceDetailConfig()) == []  # ... but it covers more than max_share
    assert len(find_faces(headshot, FaceDetailConfig(max_share=1.0))) == 1


def test_at_most_max_faces_largest_first(full_body: Image.Image, faces_dir: Path) -> None:
    scene = full_body.copy()
    scene.paste(_photo(faces_dir, "messi5.jpg").crop((100, 0, 500, 300)), (56, 0))  # a second face, 37 px
    both = find_faces(scene, FaceDetailConfig())
    assert len(both) == 2
    assert both[0].face.size > both[1].face.size
    (largest,) = find_faces(scene, FaceDetailConfig(max_faces=1))
    assert largest == both[0]
    assert find_faces(scene, FaceDetailConfig(max_faces=0)) == []


def test_box_near_the_picture_edge_is_moved_inside_and_stays_square() -> None:
    for face in (
        Face(-5.0, 2.5, 31.0, 30.6, 1.0),
        Face(90.4, 40.5, 20.3, 21.0, 1.0),
        Face(1, 1, 200, 200, 1),
    ):
        left, top, right, bottom = square_box(face, (120, 80), 2.0)
        assert right - left == bottom - top >= 1
        assert left >= 0 and top >= 0 and right <= 120 and bottom <= 80


def test_feather_is_zero_at_the_border_full_inside_and_monotone() -> None:
    side = 101
    mask = np.asarray(feather_mask(side, 0.15), dtype=np.int32)
    assert mask.shape == (side, side)
    assert (
        (mask[0] == 0).all()
        and (mask[-1] == 0).all()
        and (mask[:, 0] == 0).all()
        and (mask[:, -1] == 0).all()
    )
    assert mask[side // 2, side // 2] == 255
    centre = side // 2
    for line in (mask[centre], mask[:, centre], mask.diagonal()):
        rising, falling = line[: centre + 1], line[centre:]
        assert (np.diff(rising) >= 0).all() and (np.diff(falling) <= 0).all()
        assert len(set(rising.tolist())) > 3, "a ramp, not a hard edge"
    assert (mask == mask.T).all() and (mask == mask[::-1, ::-1]).all()


def test_paste_back_changes_nothing_outside_the_mask(full_body: Image.Image) -> None:
    config = FaceDetailConfig()
    regions = find_faces(full_body, config)
    (region,) = regions
    before = full_body.copy()
    # A redraw as different as can be: the crop inverted, at another size (as the model's output would be).
    redone = ImageOps.invert(full_body.crop(region.box)).resize((200, 200), Image.Resampling.LANCZOS)
    out = paste_back(full_body, region.box, redone, config.feather)

    assert full_body.tobytes() == before.tobytes(), "the input picture is not modified"
    assert out.size == full_body.size and out.mode == full_body.mode
    a, b = np.asarray(full_body), np.asarray(out)
    may_change = region_mask(full_body.size, regions, config.feather)
    assert (a[~may_change] == b[~may_change]).all(), "pixels outside the mask are exactly unchanged"
    changed = (a != b).any(axis=2)
    assert changed.sum() > 0.5 * may_change.sum()
    # Where the mask is full, the pixels are the redraw's exactly.
    left, top, right, bottom = region.box
    full = np.asarray(feather_mask(region.side, config.feather)) == 255
    fitted = np.asarray(redone.resize((region.side,) * 2, Image.Resampling.LANCZOS))
    assert (b[top:bottom, left:right][full] == fitted[full]).all()


def test_paste_back_refuses_a_box_that_is_not_a_square_inside_the_picture(full_body: Image.Image) -> None:
    patch = Image.new("RGB", (10, 10))
    with pytest.raises(ValueError, match="not a square"):
        paste_back(full_body, (0, 0, 10, 12), patch, 0.15)
    with pytest.raises(ValueError, match="not inside"):
        paste_back(full_body, (500, 0, 520, 20), patch, 0.15)


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="strength"):
        FaceDetailConfig(strength=0)
    with pytest.raises(ValueError, match="max_share"):
        FaceDetailConfig(max_share=1.5)
    with pytest.raises(ValueError, match="margin"):
        FaceDetailConfig(margin=0.5)


@pytest.mark.parametrize(
    ("face", "crop", "side"),
    [
        (40, 80, 312),  # a small face: its crop upsampled until the face spans 0.3 x 512 = 154 px, not to 512
        (10, 40, 512),  # a tiny one (or a wide crop): capped at the model's native size
        (200, 400, 400),  # already that large: redrawn at its own resolution, never below it
        (300, 600, 600),  # larger than native: never downsampled either
    ],
)
def test_a_face_is_redrawn_at_the_size_it_needs_capped_at_native(face: int, crop: int, side: int) -> None:
    from gpu_agent.engine.face_detail import FaceRegion

    region = FaceRegion(Face(0, 0, face, face, 1.0), (0, 0, crop, crop))
    assert redraw_side(region, 512, 0.3) == side
