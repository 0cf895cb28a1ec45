"""Face detail, the geometry: which faces of a render to redo, the square crop around each, the feathered mask
and the paste back. Torch-free (dlib, numpy, PIL); the re-denoise itself is the Renderer's ``_detail_faces``.

A face that covers a small part of a picture (a full-body travel photo) gets few latent pixels, so it
comes out soft or wrong. A portrait studio finishes it like ADetailer does: find the face, crop a square
around it with margin, redraw that crop at the model's native size with the member's LoRA and a face
prompt, and blend it back with a mask that fades to nothing at the crop's border. Pixels where the mask is 0
(everything outside the crop, and the crop's own border) stay exactly as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from gpu_agent.photos.faces import Face, crop_box, detect_faces, detection_copy

if TYPE_CHECKING:
    from storage.settings import Settings

FACE_PROMPT = "close-up photo of {subject}, detailed face, sharp focus on the eyes, natural skin texture"
"""The prompt a face crop is redrawn with; ``{subject}`` is the member's subject, as in any render prompt."""

Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels, right and bottom exclusive, as PIL's crop takes it."""


@dataclass(frozen=True)
class FaceDetailConfig:
    """How the face pass chooses and redraws faces."""

    max_share: float = 0.05
    """A face is redone only when its box covers less than this share of the picture's area (a close-up's
    face is already drawn at full resolution)."""
    max_faces: int = 3
    """At most this many faces per picture, the largest first."""
    strength: float = 0.4
    """img2img denoising strength of the crop: enough to redraw the features, not the pose or the lighting."""
    margin: float = 2.0
    """The crop's side as a multiple of the face's size (context for the model: hair, neck, background)."""
    feather: float = 0.15
    """The mask fades from 0 at the crop's border to 1 over this share of the crop's side."""
    min_score: float = 0.5
    """dlib HOG detection score below which a find is not trusted as a face."""
    upsample: int = 1
    """dlib upsampling passes: 1 finds faces down to about 40 px, which is what a full-body render has."""
    detect_max_side: int = 1024
    """Detection runs on a copy with its long side at most this (faster on upscales)."""

    def __post_init__(self) -> None:
        if not 0 < self.max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {self.max_share}")
        if self.max_faces < 0:
            raise ValueError(f"max_faces must be at least 0, got {self.max_faces}")
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.margin < 1:
            raise ValueError(f"margin must be at least 1, got {self.margin}")
        if not 0 < self.feather <= 0.5:
            raise ValueError(f"feather must be in (0, 0.5], got {self.feather}")

    @classmethod
    def from_settings(cls, settings: Settings) -> FaceDetailConfig:
        return cls(
            max_share=settings.render_face_detail_max_share,
            max_faces=settings.render_face_detail_max_faces,
            strength=settings.render_face_detail_strength,
        )


@dataclass(frozen=True)
class FaceRegion:
    """One face to redo: the detection and the square crop around it (inside the picture)."""

    face: Face
    box: Box

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]


def find_faces(image: Image.Image, config: FaceDetailConfig) -> list[FaceRegion]:
    """The faces of ``image`` to redo, largest first: trusted detections smaller than ``max_share`` of the
    picture, at most ``max_faces``, each with its square crop box (``margin`` × the face, moved and if needed
    shrunk to lie inside the picture)."""
    if config.max_faces == 0:
        return []
    rgb = image.convert("RGB")
    array, back = detection_copy(rgb, config.detect_max_side)
    faces, _ = detect_faces(array, back, config.upsample)
    area = image.width * image.height
    small = [f for f in faces if f.score >= config.min_score and f.width * f.height < config.max_share * area]
    return [FaceRegion(f, square_box(f, image.size, config.margin)) for f in small[: config.max_faces]]


def square_box(face: Face, image_size: tuple[int, int], margin: float) -> Box:
    """The photo checks' crop box (``margin`` × the face, moved and if needed shrunk to lie inside the
    picture), in whole pixels and exactly square: rounding both corners can make its sides differ by one."""
    width, height = image_size
    left, top, right, bottom = crop_box(face, image_size, margin)
    side = max(1, min(right - left, bottom - top))
    left, top = min(left, width - side), min(top, height - side)
    return left, top, left + side, top + side


def feather_mask(side: int, feather: float) -> Image.Image:
    """A square "L" mask: 0 on the outermost pixels, rising linearly with the distance from the nearest edge
    to 255 over ``feather`` × ``side`` pixels, 255 inside. Monotone from every edge towards the centre."""
    if side < 1:
        raise ValueError(f"mask side must be at least 1, got {side}")
    ramp = max(1.0, feather * side)
    index = np.arange(side, dtype=np.float64)
    to_edge = np.minimum(index, side - 1 - index)  # distance of a row/column from the nearer edge
    distance = np.minimum.outer(to_edge, to_edge)
    alpha = np.clip(distance / ramp, 0.0, 1.0)
    return Image.fromarray(np.round(alpha * 255).astype(np.uint8), mode="L")


def paste_back(image: Image.Image, box: Box, redone: Image.Image, feather: float) -> Image.Image:
    """``image`` with ``redone`` (any size; resized to the box) blended into ``box`` through the feathered
    mask. A new image; ``image`` is not changed. Where the mask is 0 the pixels are ``image``'s exactly."""
    left, top, right, bottom = box
    side = right - left
    if side != bottom - top or side < 1:
        raise ValueError(f"face box {box} is not a square")
    if left < 0 or top < 0 or right > image.width or bottom > image.height:
        raise ValueError(f"face box {box} is not inside the {image.width}x{image.height} picture")
    original = image.crop(box)
    fitted = redone.convert(image.mode).resize((side, side), Image.Resampling.LANCZOS)
    blended = Image.composite(fitted, original, feather_mask(side, feather))
    out = image.copy()
    out.paste(blended, (left, top))
    return out


def redraw_side(region: FaceRegion, native: int, face_side: float) -> int:
    """The side (a multiple of 8) a face's square crop is redrawn at so that the face itself spans at least
    ``face_side`` × ``native`` pixels: upsampled only as far as that takes, never beyond ``native`` (the
    model's own size), never below the crop's own resolution (a face already that large is redrawn as is)."""
    wanted = math.ceil(region.side * face_side * native / max(1.0, region.face.size))
    side = max(region.side, min(native, wanted))
    return -(-side // 8) * 8


def region_mask(size: tuple[int, int], regions: list[FaceRegion], feather: float) -> np.ndarray:
    """A boolean array (height × width) of the pixels the regions' masks may change (mask above 0)."""
    width, height = size
    changed = np.zeros((height, width), dtype=bool)
    for region in regions:
        left, top, right, bottom = region.box
        changed[top:bottom, left:right] |= np.asarray(feather_mask(region.side, feather)) > 0
    return changed
