"""Few-shot training sets: more training pictures from a few face crops, so the model learns the face, not the wall.

Each photo (a face-centred crop from the door) gives ``variants`` new pictures, each a mix of: a closer crop
around the face (several scales), a mirror image, a light and colour change, and a new background behind the
person (person_mask.py: GrabCut seeded by the face; studio-like gradients with soft out-of-focus blobs). The
originals are kept. Everything is drawn from a seeded generator: the same photos give the same set (a resumed
training must see the photos it was checkpointed with).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from gpu_agent.photos.faces import Face
from gpu_agent.photos.person_mask import NoFace, PersonMask, find_face, person_mask

ZOOMS = (0.82, 0.68)
"""Closer crops, as a share of the photo's side (the door's crops hold the face at 1/2.2 of the side, so the
closest still shows the whole head)."""

RECIPES: tuple[tuple[str, ...], ...] = (
    ("flip", "light"),
    ("backdrop",),
    ("zoom0", "light"),
    ("backdrop", "flip", "light"),
    ("zoom1", "backdrop"),
    ("zoom0", "flip", "backdrop", "light"),
    ("zoom1", "flip", "light"),
    ("backdrop", "zoom0"),
)
"""The variants of one photo, in order; half of them get a new background."""

PALETTE = np.array(
    [
        (236, 236, 232),
        (200, 203, 207),
        (120, 124, 130),
        (52, 56, 64),
        (24, 26, 30),
        (214, 196, 170),
        (170, 132, 96),
        (90, 60, 44),
        (186, 206, 224),
        (70, 110, 150),
        (36, 62, 96),
        (196, 222, 196),
        (86, 130, 96),
        (232, 204, 204),
        (150, 70, 80),
        (250, 228, 170),
    ],
    dtype=np.float32,
)
"""Backdrop colours: studio greys, warm and cool paper, muted colours."""


@dataclass(frozen=True)
class AugmentedSet:
    """What a training set became: every picture to train on (originals first), and the counts for the report."""

    paths: list[Path]
    photos: int  # originals
    made: int  # new pictures
    without_face: int = 0  # originals left as they were (no face found to centre on)

    @property
    def images(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Variant:
    name: str  # e.g. "zoom0+flip+backdrop"
    image: Image.Image
    mask: np.ndarray  # the person's alpha in ``image``'s pixels
    backdrop: bool


def augment_photo(image: Image.Image, count: int, seed: int, face: Face | None = None) -> list[Variant]:
    """``count`` variants of one portrait (RGB). Raises NoFace when no face is found."""
    image = image.convert("RGB")
    mask = person_mask(image, face)
    rng = np.random.default_rng(seed)
    out: list[Variant] = []
    for n in range(count):
        recipe = RECIPES[n % len(RECIPES)]
        out.append(_apply(image, mask, recipe, rng))
    return out


def augment_files(photos: Sequence[Path], folder: Path, *, variants: int, seed: int) -> AugmentedSet:
    """The training set for ``photos`` (JPEG files written to ``folder``): the originals, then ``variants`` new
    pictures of each. A photo in which no face is found is kept but not augmented."""
    folder.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    skipped = 0
    for index, path in enumerate(photos):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        try:
            found = augment_photo(image, variants, seed=seed * 1000 + index)
        except NoFace:
            skipped += 1
            continue
        for k, variant in enumerate(found):
            target = folder / f"{path.stem}-aug{k:02d}.jpg"
            target.write_bytes(jpeg(variant.image))
            made.append(target)
    return AugmentedSet([*photos, *made], photos=len(photos), made=len(made), without_face=skipped)


def jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# --- the operations ----------------------------------------------------------------------------------------


def _apply(
    image: Image.Image, mask: PersonMask, recipe: tuple[str, ...], rng: np.random.Generator
) -> Variant:
    pixels = np.asarray(image, dtype=np.uint8)
    alpha = mask.alpha
    face = mask.face
    for op in recipe:
        if op.startswith("zoom"):
            pixels, alpha, face = _zoom(pixels, alpha, face, ZOOMS[int(op[4:])])
        elif op == "flip":
            pixels, alpha = pixels[:, ::-1], alpha[:, ::-1]
            face = Face(
                pixels.shape[1] - face.left - face.width, face.top, face.width, face.height, face.score
            )
        elif op == "backdrop":
            pixels = np.ascontiguousarray(pixels)
            backdrop = _backdrop(pixels.shape[:2], _mean_outside(pixels, alpha), rng)
            a = alpha[..., None]
            pixels = (pixels * a + backdrop * (1.0 - a) + 0.5).astype(np.uint8)
        elif op == "light":
            pixels = _light(np.ascontiguousarray(pixels), rng)
    pixels, alpha = np.ascontiguousarray(pixels), np.ascontiguousarray(alpha)
    if pixels.shape[:2] != (image.height, image.width):
        pixels = np.asarray(cv2.resize(pixels, image.size, interpolation=cv2.INTER_CUBIC), np.uint8)
        alpha = np.asarray(cv2.resize(alpha, image.size, interpolation=cv2.INTER_LINEAR), np.float32)
    return Variant("+".join(recipe), Image.fromarray(pixels), alpha, "backdrop" in recipe)


def _zoom(
    pixels: np.ndarray, alpha: np.ndarray, face: Face, share: float
) -> tuple[np.ndarray, np.ndarray, Face]:
    """A square ``share`` of the picture's side around the face (kept inside the picture)."""
    h, w = pixels.shape[:2]
    side = round(min(h, w) * share)
    cx, cy = face.centre
    left = int(min(max(cx - side / 2, 0), w - side))
    top = int(min(max(cy - side / 2, 0), h - side))
    moved = Face(face.left - left, face.top - top, face.width, face.height, face.score)
    return pixels[top : top + side, left : left + side], alpha[top : top + side, left : left + side], moved


def _light(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and warmth, each nudged a little (a face stays that person's face): one
    affine colour transform (OpenCV, saturating to 0-255)."""
    brightness, contrast, saturation = rng.uniform(0.88, 1.12), rng.uniform(0.88, 1.12), rng.uniform(0.8, 1.2)
    warmth = rng.uniform(-0.05, 0.05)
    grey = np.full((3, 3), (1.0 - saturation) / 3.0) + np.eye(3) * saturation  # towards the pixel's grey
    gain = np.diag([1.0 + warmth, 1.0, 1.0 - warmth]) * brightness
    matrix = np.zeros((3, 4))
    matrix[:, :3] = gain @ (contrast * grey)
    matrix[:, 3] = gain @ np.full(3, 128.0 * (1.0 - contrast))
    return cv2.transform(pixels, matrix)


def _mean_outside(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    outside = (alpha < 0.5).astype(np.uint8)
    if not outside.any():
        return pixels.reshape(-1, 3).mean(axis=0)
    return np.array(cv2.mean(pixels, mask=outside)[:3], dtype=np.float32)


def _backdrop(shape: tuple[int, int], old: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A studio-like background far in colour from the ``old`` one: a vertical gradient between two palette
    colours with a few soft blobs (out-of-focus lights), drawn small and scaled up."""
    far = np.argsort(-np.linalg.norm(PALETTE - old, axis=1))[: len(PALETTE) // 2]
    top, bottom = PALETTE[rng.choice(far)], PALETTE[rng.choice(far)]
    small = 48
    t = np.linspace(0.0, 1.0, small, dtype=np.float32)[:, None, None]
    canvas = np.broadcast_to(top * (1 - t) + bottom * t, (small, small, 3)).copy()
    ys, xs = np.mgrid[0:small, 0:small].astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        cx, cy, r = rng.uniform(0, small), rng.uniform(0, small), rng.uniform(small / 10, small / 4)
        glow = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(0.1, 0.3)
        canvas = canvas * (1 - glow) + 255.0 * glow
    return cv2.resize(canvas, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


__all__ = ["AugmentedSet", "NoFace", "Variant", "augment_files", "augment_photo", "find_face"]
