"""Faces with dlib: the HOG frontal detector (no weights), the 5-point landmarks and the 128-d ResNet embedding.

The two model files ship in the ``face_recognition_models`` package. Its ``__init__`` imports ``pkg_resources``
(absent on modern setuptools), so the folder is found by path and the package is never imported. Models load
once per process; dlib's detector and networks keep scratch buffers, so each is used under its own lock.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_LANDMARKS = "shape_predictor_5_face_landmarks.dat"
_EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelsMissing(RuntimeError):
    """The face model files are not installed (pip install face_recognition_models)."""


@dataclass(frozen=True)
class Face:
    """A detected face in the coordinates of the full photo."""

    left: float
    top: float
    width: float
    height: float
    score: float

    @property
    def size(self) -> float:
        return max(self.width, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return self.left + self.width / 2, self.top + self.height / 2


class _Models:
    def __init__(self) -> None:
        import dlib  # heavy; only when the first photo is checked

        folder = models_folder()
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(folder / _LANDMARKS))
        self.embedder = dlib.face_recognition_model_v1(str(folder / _EMBEDDER))
        self.detect_lock = threading.Lock()
        self.embed_lock = threading.Lock()


_models: _Models | None = None
_load_lock = threading.Lock()


def models_folder() -> Path:
    """face_recognition_models' ``models/`` folder, located without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing(
            "face_recognition_models is not installed: pip install face_recognition_models"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (_LANDMARKS, _EMBEDDER):
        if not (folder / name).is_file():
            raise FaceModelsMissing(f"{folder / name} is missing; reinstall face_recognition_models")
    return folder


def models() -> _Models:
    """The process-wide models, loaded on first use (thread-safe)."""
    global _models  # the lazy cache is the point
    if _models is None:
        with _load_lock:
            if _models is None:
                _models = _Models()
    return _models


def detection_copy(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """An RGB uint8 array of ``image`` with its long side at most ``max_side``, and the factor back to ``image``."""
    scale = min(1.0, max_side / max(image.size))
    small = (
        image
        if scale >= 1.0
        else image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
    )
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)), 1.0 / scale


def detect_faces(array: np.ndarray, back: float, upsample: int) -> tuple[list[Face], list[Any]]:
    """Faces found in ``array`` (largest first) in full-photo coordinates, and dlib's rectangles in ``array``'s."""
    m = models()
    with m.detect_lock:
        rects, scores, _ = m.detector.run(array, upsample, 0.0)
    found = sorted(zip(rects, scores, strict=True), key=lambda rs: -rs[0].width() * rs[0].height())
    faces = [
        Face(r.left() * back, r.top() * back, r.width() * back, r.height() * back, float(s)) for r, s in found
    ]
    return faces, [r for r, _ in found]


CHIP_SIZE, CHIP_PADDING = 150, 0.25
"""The aligned face chip dlib's ResNet was trained on."""


def descriptor_backend() -> str:
    """``torch`` in a process that has imported torch (the agent), else ``dlib``."""
    return "torch" if "torch" in sys.modules else "dlib"


def describe_chip(chip: np.ndarray) -> np.ndarray:
    """dlib's 128-d descriptor of an aligned chip (faces of one person lie within ~0.6 of each other).

    In a process that runs torch (the agent) the same network runs on torch's convolutions (face_net: identical
    descriptors, ~7× less CPU); elsewhere (the bot, whose image has no torch) on dlib's own code."""
    m = models()
    if descriptor_backend() == "torch":
        from gpu_agent.photos.face_net import face_net

        net = face_net(models_folder() / _EMBEDDER)
        if net is not None:
            return net.describe([chip])[0]
    with m.embed_lock:
        return np.asarray(m.embedder.compute_face_descriptor(chip), dtype=np.float64)


def embed_face(array: np.ndarray, rect: Any) -> np.ndarray:
    """The descriptor of the face in ``rect`` of ``array`` (aligned on its 5 landmarks first)."""
    m = models()
    with m.embed_lock:
        chip = m.dlib.get_face_chip(array, m.landmarks(array, rect), CHIP_SIZE, CHIP_PADDING)
    return describe_chip(chip)


def crop_box(face: Face, image_size: tuple[int, int], scale: float) -> tuple[int, int, int, int]:
    """A square around the face, ``scale`` × its size, moved (and if needed shrunk) to lie inside the image.

    Shrinking instead of padding: padded borders would be learned by the LoRA as part of the person's look.
    """
    width, height = image_size
    side = min(face.size * scale, width, height)
    cx, cy = face.centre
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return round(left), round(top), round(left + side), round(top + side)
