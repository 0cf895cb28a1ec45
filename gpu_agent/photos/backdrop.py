"""Studio backdrops: the person of a picture kept, the background replaced by a studio colour or blurred.

The person is found as for few-shot training (person_mask.py: GrabCut seeded by the face). The blur is a
normalised convolution of the background alone (the person cut out, the weights blurred alike), so the person's
colours do not bleed into the blur around them.
"""

from __future__ import annotations

import io
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from gpu_agent.photos.person_mask import NoFace, PersonMask, person_mask

Style = Literal["white", "grey", "black", "blur"]

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (244, 244, 242),
    "grey": (128, 131, 136),
    "black": (18, 18, 20),
}
BLUR = 0.035
"""The background blur's sigma as a share of the picture's long side (a portrait lens wide open)."""
STYLES: tuple[Style, ...] = ("white", "grey", "black", "blur")


def backdrop(image: Image.Image, style: Style, mask: PersonMask | None = None) -> Image.Image:
    """``image`` (RGB) with its background replaced. Raises NoFace when no person can be found."""
    rgb = image.convert("RGB")
    mask = mask or person_mask(rgb)
    pixels = np.asarray(rgb, dtype=np.float32)
    a = mask.alpha[..., None]
    if style == "blur":
        sigma = max(1.0, BLUR * max(rgb.size))
        weight = np.ascontiguousarray(1.0 - mask.alpha)
        blurred = cv2.GaussianBlur(pixels * weight[..., None], (0, 0), sigma)
        norm = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
        behind = np.where(
            norm > 1e-3, blurred / np.maximum(norm, 1e-3), cv2.GaussianBlur(pixels, (0, 0), sigma)
        )
    else:
        behind = _studio_paper(rgb.size, COLOURS[style])
    return Image.fromarray(np.clip(pixels * a + behind * (1.0 - a) + 0.5, 0, 255).astype(np.uint8))


def _studio_paper(size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """A solid studio colour, a shade lighter behind the head and darker at the edges, as a lit paper roll."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((xs - w / 2) / w, (ys - h * 0.35) / h)
    shade = (1.06 - 0.16 * np.clip(r, 0.0, 1.0))[..., None]
    return np.broadcast_to(np.array(colour, np.float32), (h, w, 3)) * shade


def backdrop_png(data: bytes, style: Style) -> bytes:
    """The picture (file bytes) with a clean backdrop, as PNG. Raises NoFace, or ValueError for no picture."""
    from gpu_agent.photos.likeness import open_image

    image = open_image(data)
    if image is None:
        raise ValueError("not a picture")
    out = io.BytesIO()
    backdrop(image, style).save(out, "PNG")
    return out.getvalue()


__all__ = ["STYLES", "NoFace", "Style", "backdrop", "backdrop_png"]
