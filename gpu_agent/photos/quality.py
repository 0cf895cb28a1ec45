"""Sharpness and sameness measures on decoded photos."""

from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image
from scipy import ndimage

from gpu_agent.photos.faces import Face


def sharpness(image: Image.Image, face: Face, size: int) -> float:
    """Variance of the Laplacian of the grey face box scaled to ``size``×``size`` (higher is sharper).

    Scaling to one size makes the number comparable between a 90-px and a 900-px face.
    """
    box = (round(face.left), round(face.top), round(face.left + face.width), round(face.top + face.height))
    grey = image.crop(box).convert("L").resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return float(ndimage.laplace(np.asarray(grey, dtype=np.float64)).var())


def perceptual_hash(image: Image.Image) -> imagehash.ImageHash:
    """64-bit DCT hash of the whole upright photo: stable under re-encoding, resizing and colour changes."""
    return imagehash.phash(image)
