"""The agent's face descriptor (dlib's ResNet weights on torch) against dlib's own network, on real faces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpu_agent.photos.face_net import FaceNet, FaceNetError
from gpu_agent.photos.faces import (
    CHIP_PADDING,
    CHIP_SIZE,
    detect_faces,
    detection_copy,
    models,
    models_folder,
)
from photogen.assets import OTHER_PERSON_PHOTO, demo_photos

MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def _chips(images: list[Image.Image]) -> list[np.ndarray]:
    m = models()
    chips = []
    for img in images:
        full = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
        small, back = detection_copy(img, max(img.size))
        _, rects = detect_faces(small, back, 1)
        r = rects[0]
        rect = m.dlib.rectangle(
            round(r.left() * back), round(r.top() * back), round(r.right() * back), round(r.bottom() * back)
        )
        chips.append(m.dlib.get_face_chip(full, m.landmarks(full, rect), CHIP_SIZE, CHIP_PADDING))
    return chips


@pytest.fixture(scope="module")
def chips(faces_dir: Path) -> list[np.ndarray]:
    import io

    images = [Image.open(io.BytesIO(data)) for _, data in demo_photos()[:4]]
    images += [
        Image.open(OTHER_PERSON_PHOTO),
        Image.open(faces_dir / "astronaut.png"),
        Image.open(faces_dir / "messi5.jpg"),
    ]
    return _chips(images)


def test_the_torch_network_gives_dlibs_descriptors(chips: list[np.ndarray]) -> None:
    net = FaceNet(models_folder() / MODEL)
    ours = net.describe(chips)
    theirs = np.array([np.asarray(models().embedder.compute_face_descriptor(c)) for c in chips])
    assert ours.shape == (len(chips), 128)
    assert np.abs(ours - theirs).max() < 1e-5
    # and the distances that decide a likeness are the same to the 4 places the scorer keeps
    for i in range(len(chips)):
        for j in range(len(chips)):
            assert round(float(np.linalg.norm(ours[i] - ours[j])), 4) == pytest.approx(
                round(float(np.linalg.norm(theirs[i] - theirs[j])), 4), abs=1e-4
            )


def test_describing_leaves_the_process_thread_count_as_it_was(chips: list[np.ndarray]) -> None:
    import torch

    net = FaceNet(models_folder() / MODEL)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net.describe(chips[:1])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_file_that_is_not_the_face_network_is_refused(tmp_path: Path) -> None:
    landmarks = models_folder() / "shape_predictor_5_face_landmarks.dat"
    with pytest.raises(FaceNetError):
        FaceNet(landmarks)
    truncated = tmp_path / "half.dat"
    truncated.write_bytes((models_folder() / MODEL).read_bytes()[:11_000_000])
    with pytest.raises(FaceNetError):
        FaceNet(truncated)


def test_the_bots_photo_checks_stay_torch_free() -> None:
    """The bot checks photos at the door with the same code; its image has no torch, and a process that has not
    imported torch must not start to (dlib's own network describes the faces there)."""
    code = (
        "import sys\n"
        "from gpu_agent.photos import PhotoCheckConfig, check_photos\n"
        "from photogen.assets import demo_photos\n"
        "report = check_photos(demo_photos()[:3], PhotoCheckConfig(min_good_photos=1))\n"
        "assert len(report.good) == 3, report\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
