"""Cheap previews of a picture in the making: latents → RGB without the VAE.

A Stable Diffusion latent is close to a linear function of the picture's colours, so a 4×3 matrix turns a latent
into a recognisable (blurry, 1/8-size) thumbnail for the cost of a matrix product — no VAE decode, no extra GPU
memory. The factors are the widely used least-squares fits of each family's VAE latents to RGB (ComfyUI's live
previews use the same numbers). Latents of another shape (the tiny test models) fall back to
their first three channels, normalised: still the real pixels of the real latents, only less faithful colours.
Torch is imported only to convert, so the agent's torch-free side can name ``PreviewPlan``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from PIL import Image

if TYPE_CHECKING:
    import torch

Family = Literal["sd1", "sd2", "sdxl"]

# latent channel → (r, g, b) weights
_SD1_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SDXL_FACTORS = (
    (0.3920, 0.4054, 0.4549),
    (-0.2634, -0.0196, 0.0653),
    (0.0568, 0.1687, -0.0755),
    (-0.3112, -0.2359, -0.2076),
)
_FACTORS = {"sd1": _SD1_FACTORS, "sd2": _SD1_FACTORS, "sdxl": _SDXL_FACTORS}

PREVIEW_EDGE = (
    256  # pixels on the long side: small enough to upload every few seconds, big enough to see a face
)


def latents_to_image(latents: torch.Tensor, family: Family, *, edge: int = PREVIEW_EDGE) -> Image.Image:
    """One latent (C, H, W) — or the first of a batch — as an RGB thumbnail ``edge`` pixels on its long side."""
    import torch

    latent = latents[0] if latents.dim() == 4 else latents
    latent = latent.detach().float().cpu()
    if latent.shape[0] == 4:
        factors = torch.tensor(_FACTORS[family], dtype=torch.float32)  # (4, 3)
        rgb = torch.einsum("chw,cr->rhw", latent, factors)
        rgb = ((rgb + 1) / 2).clamp(0, 1)
    else:
        rgb = latent[:3] if latent.shape[0] >= 3 else latent[:1].expand(3, -1, -1)
        low, high = rgb.amin(), rgb.amax()
        rgb = (rgb - low) / (high - low + 1e-6)
    array = (rgb.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    image = Image.fromarray(array, "RGB")
    scale = edge / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def jpeg_bytes(image: Image.Image, quality: int = 80) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@dataclass(frozen=True)
class PreviewPlan:
    """When and how a job makes previews.

    ``due()`` is asked before each preview is made (the agent throttles to Discord's edit limits there), and
    ``deliver(step, total, image)`` receives it. Training previews every ``every_steps`` optimizer steps with a
    ``steps``-step sample at ``size`` pixels; renders preview from their own latents at most when ``due()``.
    """

    deliver: Callable[[int, int, Image.Image], None]
    due: Callable[[], bool] = lambda: True
    every_steps: int = 100
    size: int = 256
    steps: int = 8
