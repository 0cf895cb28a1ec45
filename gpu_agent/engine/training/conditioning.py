"""What the UNet sees, computed once per run: photo latents (as the VAE's mean and std, so each step still
draws its own latent sample as diffusers' ``--cache_latents`` does) and prompt embeddings.

Once these are cached the VAE (and, without text-encoder training, the text encoders) can leave the device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image, ImageOps


@dataclass(frozen=True)
class Latents:
    """VAE posterior of N images, already in the UNet's latent scale."""

    mean: torch.Tensor  # (N, C, h, w)
    std: torch.Tensor  # (N, C, h, w)
    time_ids: torch.Tensor | None  # (N, 6) SDXL size/crop conditioning, else None

    def __len__(self) -> int:
        return self.mean.shape[0]

    def split(self, n: int) -> tuple[Latents, Latents]:
        """The first ``n`` images' latents and the rest's."""
        ids = self.time_ids
        return (
            Latents(self.mean[:n], self.std[:n], None if ids is None else ids[:n]),
            Latents(self.mean[n:], self.std[n:], None if ids is None else ids[n:]),
        )

    def sample(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(self.mean[index].shape, generator=generator, dtype=torch.float32)
        return self.mean[index] + self.std[index] * noise.to(self.mean.device)


@dataclass(frozen=True)
class PromptEmbeddings:
    hidden: torch.Tensor  # (P, 77, D)
    pooled: torch.Tensor | None  # (P, D2) for SDXL


def photo_sha256(image: Image.Image) -> str:
    """Hash of a photo's decoded RGB pixels and size (the photos reach the trainer decoded, not as files)."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def square_crop(image: Image.Image, resolution: int) -> tuple[Image.Image, tuple[int, int], tuple[int, int]]:
    """Centre square crop at ``resolution``; also the original (height, width) and the crop's top-left corner
    in resized pixels, which SDXL takes as conditioning."""
    rgb = image.convert("RGB")
    scale = resolution / min(rgb.width, rgb.height)
    resized_w, resized_h = round(rgb.width * scale), round(rgb.height * scale)
    top, left = max(0, (resized_h - resolution) // 2), max(0, (resized_w - resolution) // 2)
    fitted = ImageOps.fit(
        rgb, (resolution, resolution), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5)
    )
    return fitted, (rgb.height, rgb.width), (top, left)


ENCODE_BATCH_PIXELS = 1024 * 1024
ENCODE_BATCH_MAX = 16


def encode_batch(resolution: int) -> int:
    """Images per VAE encoder call at ``resolution``: ENCODE_BATCH_PIXELS in all, at least 1."""
    return max(1, min(ENCODE_BATCH_MAX, ENCODE_BATCH_PIXELS // (resolution * resolution)))


@torch.no_grad()
def encode_images(
    vae: Any,
    image_processor: Any,
    images: list[Image.Image],
    resolution: int,
    *,
    sdxl: bool,
    device: torch.device,
    batch: int | None = None,
) -> Latents:
    """Encode ``images`` (any size and mode) into latent mean/std at ``resolution``, on ``device``.

    ``batch`` images per VAE call; by default as many as ENCODE_BATCH_PIXELS allow: one at a time at 1024 px
    (the VAE encoder's activations at full resolution would otherwise set the run's memory peak), four at
    512 px, up to ENCODE_BATCH_MAX at small sizes, where one call per image cost more than the encoding.
    """
    batch = batch or encode_batch(resolution)
    means, stds, time_ids = [], [], []
    vae_dtype = vae.dtype
    vae.to(device)
    # fp16 overflows in the SDXL VAE (its config says force_upcast); bf16 has fp32's range and is kept.
    upcast = vae_dtype == torch.float16 and getattr(vae.config, "force_upcast", True)
    if upcast:
        vae.to(dtype=torch.float32)
    work_dtype = torch.float32 if upcast else vae_dtype
    scale = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    try:
        for start in range(0, len(images), batch):
            crops = [square_crop(im, resolution) for im in images[start : start + batch]]
            pixels = image_processor.preprocess([c[0] for c in crops], height=resolution, width=resolution)
            posterior = vae.encode(pixels.to(device=device, dtype=work_dtype)).latent_dist
            means.append(((posterior.mean - shift) * scale).float())
            stds.append((posterior.std * scale).float())
            for _, original_hw, top_left in crops:
                time_ids.append(list(original_hw) + list(top_left) + [resolution, resolution])
    finally:
        if upcast:
            vae.to(dtype=vae_dtype)
    return Latents(
        mean=torch.cat(means).float(),
        std=torch.cat(stds).float(),
        time_ids=torch.tensor(time_ids, dtype=torch.float32, device=device) if sdxl else None,
    )


def encode_prompts(pipe: Any, prompts: list[str], *, sdxl: bool, device: torch.device) -> PromptEmbeddings:
    """Embed ``prompts`` the way the pipeline does at render time (its own ``encode_prompt``).

    Runs with gradients when a text encoder carries trainable LoRA weights; the caller decides with no_grad.
    """
    if sdxl:
        hidden, _, pooled, _ = pipe.encode_prompt(
            prompts, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return PromptEmbeddings(hidden=hidden, pooled=pooled)
    hidden, _ = pipe.encode_prompt(prompts, device, 1, False)
    return PromptEmbeddings(hidden=hidden, pooled=None)
