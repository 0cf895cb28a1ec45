"""The likeness scorer on real faces: the demo photos (Eileen Collins) as the member, Grace Hopper as someone else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gpu_agent.photos.likeness import (
    BadReference,
    Reference,
    build_reference,
    describe,
    open_image,
    score_picture,
)
from photogen.assets import OTHER_PERSON_PHOTO, demo_photos


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def member() -> list[Image.Image]:
    return [open_image(data) for _, data in demo_photos()]  # type: ignore[misc]


@pytest.fixture(scope="module")
def reference(member: list[Image.Image]) -> Reference:
    ref = build_reference(member[:-1], member[-1])
    assert ref is not None
    return ref


def test_reference_holds_every_training_photo_and_the_held_out_one(reference: Reference) -> None:
    assert reference.training.shape == (7, 128) and reference.held_out is not None
    # Two real photos of one person are not identical: the held-out one keeps a measurable distance.
    assert 0.03 < (reference.held_out_nearest or 0) < 0.6


def test_someone_else_is_weak_and_the_member_is_not(member: list[Image.Image], reference: Reference) -> None:
    other = score_picture(reference, OTHER_PERSON_PHOTO.read_bytes())
    assert (
        other.verdict == "weak" and not other.passes and other.distance is not None and other.distance > 0.6
    )
    held_out = score_picture(reference, _png(member[-1]))  # a real photo that was not trained on
    assert held_out.passes, held_out
    assert held_out.score is not None and other.score is not None and held_out.score > other.score + 0.2
    assert held_out.rank() > other.rank()


def test_a_copy_of_a_training_photo_is_flagged(member: list[Image.Image], reference: Reference) -> None:
    copy = score_picture(reference, _png(member[0]))
    assert copy.verdict == "copy" and not copy.passes
    buf = io.BytesIO()  # the same shot re-encoded, as a model that memorised it would give it back
    member[0].save(buf, "JPEG", quality=90)
    assert score_picture(reference, buf.getvalue()).verdict == "copy"


def test_no_face_and_no_picture(reference: Reference) -> None:
    blank = score_picture(reference, _png(Image.new("RGB", (512, 512), (120, 90, 60))))
    assert blank.verdict == "no_face" and blank.score is None and not blank.passes
    assert score_picture(reference, b"not a picture").verdict == "no_face"
    assert describe(Image.new("RGB", (64, 64))) is None


def test_reference_round_trips_and_refuses_garbage(reference: Reference) -> None:
    again = Reference.from_json(reference.to_json())
    assert np.allclose(again.training, reference.training, atol=1e-5)
    assert again.held_out is not None and reference.held_out is not None
    assert np.allclose(again.held_out, reference.held_out, atol=1e-5)
    for bad in (
        b"{",
        b'{"v": 2, "model": "x"}',
        (
            b'{"v": 1, "model": "dlib_face_recognition_resnet_model_v1", '
            b'"training": [[1, 2]], "held_out": null}'
        ),
    ):
        with pytest.raises(BadReference):
            Reference.from_json(bad)


def test_without_a_held_out_photo_only_near_exact_copies_are_copies(member: list[Image.Image]) -> None:
    ref = build_reference(member[:3], None)
    assert ref is not None and ref.held_out is None
    assert score_picture(ref, _png(member[0])).verdict == "copy"
    assert score_picture(ref, _png(member[-1])).passes


def test_photos_without_faces_give_no_reference() -> None:
    assert build_reference([Image.new("RGB", (64, 64), (200, 10, 10))], None) is None


def test_judge_rerolls_copies_and_weak_pictures_and_keeps_the_best(
    member: list[Image.Image], reference: Reference
) -> None:
    from gpu_agent.agent.likeness import Judge

    other, blank = OTHER_PERSON_PHOTO.read_bytes(), _png(Image.new("RGB", (512, 512), (90, 90, 90)))
    copy, held_out = _png(member[0]), _png(member[-1])
    asked: list[tuple[int, int]] = []
    script = {(0, 1): blank, (0, 2): other, (1, 1): held_out}

    def rerender(index: int, attempt: int) -> bytes:
        asked.append((index, attempt))
        return script[(index, attempt)]

    pngs, scores = Judge(reference, retries=2).improve([copy, copy, held_out], rerender)
    # Picture 1: a copy, then no face, then someone else: the best of the three (weak beats copy) is kept.
    # Picture 2: a copy, then the member: kept at once. Picture 3 passed: nothing asked.
    assert asked == [(0, 1), (0, 2), (1, 1)]
    assert pngs == [other, held_out, held_out]
    assert [(s.verdict, s.tries) for s in scores] == [
        ("weak", 3),
        (scores[1].verdict, 2),
        (scores[2].verdict, 1),
    ]
    assert scores[1].verdict in ("strong", "fair") and scores[2].verdict in ("strong", "fair")
    assert Judge(reference, retries=0).improve([copy], rerender)[1][0].verdict == "copy" and len(asked) == 3
    # With the seeds named, each kept re-roll says which made it; a picture kept as rendered says nothing.
    asked.clear()
    _, seeded = Judge(reference, retries=2).improve(
        [copy, copy, held_out], rerender, seed_of=lambda index, attempt: 100 * index + attempt
    )
    assert [s.seed for s in seeded] == [2, 101, None]
