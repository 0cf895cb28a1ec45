"""Few-shot augmentation on real photos (tests/data/faces): every new picture still shows the same person by the
project's face descriptor (the agent's torch path, face_net.py), the person mask covers the face, and the
backgrounds really change. Also: the person mask itself, the same set from the same photos, the studio backdrop."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  the agent's descriptor backend (faces.descriptor_backend), as in the agent
from PIL import Image

import tests.gpu_agent.photo_cases as pc
from gpu_agent.photos import PhotoCheckConfig, check_photos
from gpu_agent.photos.augment import RECIPES, augment_files, augment_photo
from gpu_agent.photos.backdrop import COLOURS, backdrop
from gpu_agent.photos.likeness import SAME_PERSON_MAX_DISTANCE, describe_crop
from gpu_agent.photos.person_mask import NoFace, find_face, person_mask
from gpu_agent.photos.report import PhotoResult, PhotoSetReport, Verdict

VARIANTS = 6
CONFIG = PhotoCheckConfig(min_good_photos=1, crop_size=256)


@pytest.fixture(scope="module")
def crops(faces_dir: Path) -> dict[str, list[Image.Image]]:
    """Three training crops of the astronaut and one of Messi, made by the door's own check (at 256 px, as the
    photo check tests do, for speed: the geometry is that of the 512 px training crops; bench/fewshot.py runs 512)."""
    astronaut = [p for p in pc.astronaut_set(faces_dir) if p[0] in ("full.jpg", "zoom.jpg", "tilt-left.jpg")]
    report = check_photos(astronaut, CONFIG)
    other = check_photos([("leo.jpg", pc.messi_portrait(faces_dir))], CONFIG)
    assert len(report.good) == 3 and len(other.good) == 1
    return {
        "astronaut": [p.crop for p in report.good if p.crop is not None],
        "messi": [p.crop for p in other.good if p.crop is not None],
    }


@pytest.fixture(scope="module")
def augmented(crops: dict[str, list[Image.Image]]) -> dict[str, list[tuple[Image.Image, list]]]:
    return {
        who: [(img, augment_photo(img, VARIANTS, seed=n)) for n, img in enumerate(images)]
        for who, images in crops.items()
    }


def test_every_augmented_picture_shows_the_same_person(augmented) -> None:
    """Each new picture lies within the same-person distance of its photo, and farther from the other person."""
    others = {who: describe_crop(sets[0][0]) for who, sets in augmented.items()}
    checked = 0
    for who, sets in augmented.items():
        other = next(d for name, d in others.items() if name != who)
        for original, variants in sets:
            reference = describe_crop(original)
            assert reference is not None
            for v in variants:
                d = describe_crop(v.image)
                assert d is not None, f"{who} {v.name}: no face found"
                same = float(np.linalg.norm(d - reference))
                assert same <= SAME_PERSON_MAX_DISTANCE, f"{who} {v.name}: {same:.2f} from the photo"
                assert float(np.linalg.norm(d - other)) > same, (
                    f"{who} {v.name} is closer to the other person"
                )
                checked += 1
    assert checked == 4 * VARIANTS


def test_the_person_mask_covers_the_face_and_not_the_whole_picture(augmented) -> None:
    for who, sets in augmented.items():
        for _, variants in sets:
            for v in variants:
                face = find_face(v.image)
                assert face is not None, f"{who} {v.name}"
                # dlib's box reaches past the cheeks at its corners: its inner 80 % is the face itself.
                inset_w, inset_h = face.width * 0.1, face.height * 0.1
                box = (
                    face.left + inset_w,
                    face.top + inset_h,
                    face.left + face.width - inset_w,
                    face.top + face.height - inset_h,
                )
                covered = float((v.mask[_box(box, v.mask.shape)] >= 0.5).mean())
                assert covered >= 0.95, f"{who} {v.name}: the mask covers {covered:.0%} of the face"
                most = 0.95 if "zoom" in v.name else 0.85  # a close crop is mostly the person
                assert 0.15 < float((v.mask >= 0.5).mean()) < most, f"{who} {v.name}: no background left"


def test_backgrounds_really_change_and_the_person_does_not(augmented) -> None:
    """The plain backdrop variant (recipe 1: no crop, no flip, no light change) against its photo: outside the
    mask the pixels differ clearly, inside (the face) they are the photo's."""
    assert RECIPES[1] == ("backdrop",)
    for who, sets in augmented.items():
        for original, variants in sets:
            v = variants[1]
            before = np.asarray(original, dtype=np.float32)
            after = np.asarray(v.image, dtype=np.float32)
            outside, inside = v.mask < 0.05, v.mask > 0.95
            assert outside.mean() > 0.15 and inside.mean() > 0.15
            changed = np.abs(after - before).mean(axis=2)
            assert changed[outside].mean() > 40, f"{who}: background moved {changed[outside].mean():.1f}"
            assert changed[inside].mean() < 4, f"{who}: the person changed by {changed[inside].mean():.1f}"
    assert sum(v.backdrop for v in variants) >= VARIANTS // 2


def test_the_same_photos_give_the_same_set(crops, tmp_path: Path) -> None:
    """A resumed training must see the pictures it was checkpointed with."""
    photo = tmp_path / "00.jpg"
    crops["astronaut"][0].save(photo, "JPEG", quality=95)
    first = augment_files([photo], tmp_path / "a", variants=3, seed=7)
    second = augment_files([photo], tmp_path / "b", variants=3, seed=7)
    assert (first.photos, first.made, first.images) == (1, 3, 4)
    assert [p.read_bytes() for p in first.paths[1:]] == [p.read_bytes() for p in second.paths[1:]]
    other_seed = augment_files([photo], tmp_path / "c", variants=3, seed=8)
    assert [p.read_bytes() for p in first.paths[1:]] != [p.read_bytes() for p in other_seed.paths[1:]]


def test_a_picture_without_a_face_is_kept_but_not_augmented(tmp_path: Path) -> None:
    blank = tmp_path / "00.jpg"
    Image.new("RGB", (256, 256), (90, 120, 160)).save(blank)
    with pytest.raises(NoFace):
        person_mask(Image.open(blank))
    made = augment_files([blank], tmp_path / "aug", variants=4, seed=0)
    assert (made.paths, made.made, made.without_face) == ([blank], 0, 1)


def test_a_studio_backdrop_keeps_the_person(crops) -> None:
    photo = crops["astronaut"][0]
    mask = person_mask(photo)
    before = np.asarray(photo, dtype=np.float32)
    outside, inside = mask.alpha < 0.05, mask.alpha > 0.95
    white = np.asarray(backdrop(photo, "white", mask), dtype=np.float32)
    assert np.abs(white[outside] - np.array(COLOURS["white"])).mean() < 25
    assert np.abs(white[inside] - before[inside]).mean() < 2
    blurred = np.asarray(backdrop(photo, "blur", mask), dtype=np.float32)
    assert np.abs(blurred[inside] - before[inside]).mean() < 2
    # The blur smooths the background: far less fine detail than in the photo.
    detail = lambda a: np.abs(np.diff(a.mean(axis=2), axis=1))[outside[:, 1:]].mean()  # noqa: E731
    assert detail(blurred) < 0.5 * detail(before)


def test_the_photo_report_tells_a_member_with_few_photos_what_to_expect() -> None:
    good = [PhotoResult(n, f"photo {n}", Verdict.OK) for n in range(1, 4)]
    few = PhotoSetReport(good, min_good_photos=3, augment_below=8)
    assert few.accepted
    assert "3 of 3 photos are good — enough to train." in few.summary
    assert "extra pictures" in few.summary and "add 5 or more photos" in few.summary
    enough = PhotoSetReport([*good, *(PhotoResult(n, f"p{n}", Verdict.OK) for n in range(4, 9))], 3, 8)
    assert "extra pictures" not in enough.summary
    too_few = PhotoSetReport(good[:2], min_good_photos=3, augment_below=8)
    assert not too_few.accepted and "at least 3 good photos" in too_few.summary


def _box(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[slice, slice]:
    left, top, right, bottom = (round(v) for v in box)
    return slice(max(top, 0), min(bottom, shape[0])), slice(max(left, 0), min(right, shape[1]))


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
