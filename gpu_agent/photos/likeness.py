"""Likeness: how much a render looks like the member, with dlib's 128-d face descriptor.

At training the agent describes the member's accepted photos: the ones trained on, and one photo held out of
training. The held-out photo measures how far two *real* photos of this person lie apart; a render much closer to
one training photo than that is a copy of the photo, not a likeness. A render is scored against the mean
descriptor of the training photos:

- distance ≤ STRONG_MAX_DISTANCE: ``strong``; ≤ SAME_PERSON_MAX_DISTANCE: ``fair``; farther: ``weak``;
- no face found: ``no_face``; nearest training photo closer than COPY_RATIO × the held-out photo's: ``copy``.

The score shown to members is ``1 - distance`` (0-1, higher is closer), rounded to two places.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gpu_agent.photos.faces import (
    CHIP_PADDING,
    CHIP_SIZE,
    describe_chip,
    detect_faces,
    detection_copy,
    models,
)

Verdict = Literal["strong", "fair", "weak", "copy", "no_face"]
PASSING: frozenset[str] = frozenset({"strong", "fair"})

SAME_PERSON_MAX_DISTANCE = 0.6
"""dlib's documented same-person threshold for this model (99.38 % on LFW)."""
STRONG_MAX_DISTANCE = 0.45
"""Measured on the test faces: augmentations of one photo lie 0.03-0.28 apart, other people 0.64-0.70."""
COPY_RATIO = 0.5
"""A render whose nearest training photo is closer than half the held-out photo's distance is a copy."""
COPY_FLOOR = 0.06
"""A render this close to a training photo is a copy whatever the held-out photo says: re-encoding a 512 px test
face as JPEG (quality 90-95, same size) moves its descriptor by 0.02-0.07; rescaling it moves it by up to 0.2, so
rescaled copies escape this check unless the member's real photos lie far apart (then COPY_RATIO catches them)."""
RENDER_DETECT_SIDE = 320
"""Faces in renders are searched on a copy this large (a portrait's face is large; HOG time grows with pixels)."""
CROP_MIN_SIDE = 256
"""Training crops smaller than this are enlarged before the face is searched."""
_VERSION = 1
MODEL_NAME = "dlib_face_recognition_resnet_model_v1"


class BadReference(ValueError):
    """A stored likeness reference that cannot be read."""


@dataclass(frozen=True)
class Likeness:
    """The score of one picture. ``distance``: to the member's mean face; ``nearest``: to the closest training
    photo; both None when no face was found."""

    verdict: Verdict
    distance: float | None
    nearest: float | None

    @property
    def score(self) -> float | None:
        return None if self.distance is None else round(max(0.0, 1.0 - self.distance), 2)

    @property
    def passes(self) -> bool:
        return self.verdict in PASSING

    def rank(self) -> tuple[int, float]:
        """Sort key, higher is better: passing pictures by score, then weak ones, then copies, then no face."""
        tier = {"strong": 3, "fair": 3, "weak": 2, "copy": 1, "no_face": 0}[self.verdict]
        return tier, self.score or 0.0


@dataclass(frozen=True)
class Reference:
    """Descriptors of the member's accepted photos: those trained on, and the held-out one (if any)."""

    training: np.ndarray  # (n, 128)
    held_out: np.ndarray | None  # (128,)

    @property
    def centre(self) -> np.ndarray:
        return self.training.mean(axis=0)

    @property
    def held_out_nearest(self) -> float | None:
        """How close a real photo, not trained on, comes to the training photos."""
        if self.held_out is None:
            return None
        return float(np.linalg.norm(self.training - self.held_out, axis=1).min())

    @property
    def copy_distance(self) -> float:
        baseline = self.held_out_nearest
        return COPY_FLOOR if baseline is None else max(COPY_FLOOR, COPY_RATIO * baseline)

    def score(self, descriptor: np.ndarray | None) -> Likeness:
        if descriptor is None:
            return Likeness("no_face", None, None)
        distance = float(np.linalg.norm(self.centre - descriptor))
        nearest = float(np.linalg.norm(self.training - descriptor, axis=1).min())
        if nearest < self.copy_distance:
            verdict: Verdict = "copy"
        elif distance <= STRONG_MAX_DISTANCE:
            verdict = "strong"
        elif distance <= SAME_PERSON_MAX_DISTANCE:
            verdict = "fair"
        else:
            verdict = "weak"
        return Likeness(verdict, round(distance, 4), round(nearest, 4))

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": _VERSION,
                "model": MODEL_NAME,
                "training": [[round(float(x), 6) for x in row] for row in self.training],
                "held_out": None if self.held_out is None else [round(float(x), 6) for x in self.held_out],
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Reference:
        try:
            raw = json.loads(data)
            if raw.get("v") != _VERSION or raw.get("model") != MODEL_NAME:
                raise ValueError(f"version {raw.get('v')!r} of {raw.get('model')!r}")
            training = np.asarray(raw["training"], dtype=np.float64)
            held_out = None if raw["held_out"] is None else np.asarray(raw["held_out"], dtype=np.float64)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise BadReference(f"unreadable likeness reference: {err}") from None
        if (
            training.ndim != 2
            or training.shape[1:] != (128,)
            or len(training) == 0
            or (held_out is not None and held_out.shape != (128,))
        ):
            raise BadReference("likeness reference has the wrong shape")
        return cls(training, held_out)


def open_image(data: bytes) -> Image.Image | None:
    """An RGB picture from file bytes, or None when the bytes are no picture."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None


def describe(
    image: Image.Image, *, detect_side: int = RENDER_DETECT_SIDE, upsample: int = 0
) -> np.ndarray | None:
    """The descriptor of the largest face in ``image`` (None if none is found). The face is searched on a small
    copy, with one upsampling pass as a fallback; landmarks and the descriptor use the full-size pixels."""
    full = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    small, back = detection_copy(image, detect_side)
    faces, rects = detect_faces(small, back, upsample)
    if not faces and upsample == 0:
        faces, rects = detect_faces(small, back, 1)
    if not faces:
        return None
    m = models()
    r = rects[0]
    rect = m.dlib.rectangle(
        round(r.left() * back), round(r.top() * back), round(r.right() * back), round(r.bottom() * back)
    )
    with m.embed_lock:
        chip = m.dlib.get_face_chip(full, m.landmarks(full, rect), CHIP_SIZE, CHIP_PADDING)
    return describe_chip(chip)


def describe_crop(image: Image.Image) -> np.ndarray | None:
    """A stored training crop: small crops (the tests' 64 px) are enlarged first, so that the detector's 80 px
    window (40 px with one upsampling pass) fits the face. Only a face the detector finds is described."""
    if max(image.size) < CROP_MIN_SIDE:
        factor = CROP_MIN_SIDE / max(image.size)
        image = image.resize(
            (round(image.width * factor), round(image.height * factor)), Image.Resampling.BICUBIC
        )
    return describe(image)  # as renders are described, so that a copy of a crop lies at ~0 from it


def build_reference(training: Sequence[Image.Image], held_out: Image.Image | None) -> Reference | None:
    """The reference of a model from its photos (None when no training photo has a face to describe)."""
    rows = [d for d in (describe_crop(img) for img in training) if d is not None]
    if not rows:
        return None
    return Reference(np.stack(rows), None if held_out is None else describe_crop(held_out))


def score_picture(reference: Reference, data: bytes) -> Likeness:
    """The likeness of one rendered picture (file bytes)."""
    image = open_image(data)
    return reference.score(None if image is None else describe(image))
