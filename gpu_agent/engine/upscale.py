"""The U button's learned upscaler: diffusers' StableDiffusionUpscalePipeline (Stability's x4 upscaler).

A learned super-resolution model draws new detail at 4x the picture's size, conditioned on the low-resolution
picture and the prompt; it is not a re-render (the composition is the source's, pixel for pixel at low
frequencies). Settings: ``UPSCALER_MODEL`` names it (a hub id such as stabilityai/stable-diffusion-x4-upscaler
in the model cache, a local diffusers folder, or ``tiny-upscaler``, the random test model); empty keeps the
fallback (Lanczos 2x and a light re-denoise with the base model, gpu_agent/engine/render.py), which
``UPSCALE_REFINE`` also runs after the learned model. ESRGAN-family networks through spandrel were not taken:
spandrel needs torchvision, which this install does not have.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from gpu_agent.engine.models import BaseModelError, _from_pretrained
from gpu_agent.engine.tiny import TINY_UPSCALER, build_tiny_upscaler

FACTOR = 4
NOISE_LEVEL = 20
"""Noise added to the low-resolution picture before upscaling (diffusers' default): more invents more
detail."""


class Upscaler:
    """One loaded x4 upscaler. ``upscale`` is not thread-safe: the Renderer calls it under its lock."""

    factor = FACTOR

    def __init__(
        self,
        model: str,
        *,
        device: torch.device,
        dtype: torch.dtype,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from diffusers import StableDiffusionUpscalePipeline

        self.model = model
        if model == TINY_UPSCALER:
            pipe = build_tiny_upscaler()
        else:
            pipe = _from_pretrained(model, dtype=dtype, cache_dir=cache_dir)
        if not isinstance(pipe, StableDiffusionUpscalePipeline):
            raise BaseModelError(
                f"upscaler {model!r} is a {type(pipe).__name__}, not a StableDiffusionUpscalePipeline "
                "(e.g. stabilityai/stable-diffusion-x4-upscaler)"
            )
        pipe.to(device)
        if pipe.unet.dtype != dtype:
            pipe.to(dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe

    def upscale(
        self,
        image: Image.Image,
        *,
        prompt: str,
        negative_prompt: str,
        seed: int,
        steps: int,
        guidance: float,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Image.Image, bool]:
        """``image`` at 4x its size, and whether the pipeline's own safety checker (if it has one)
        blanked it."""
        extra: dict[str, Any] = {}
        if progress is not None:
            # The upscale pipeline still takes the old per-step callback(step, t, latents).
            extra = {
                "callback": lambda step, _t, _latents: progress(min(step + 1, steps), steps),
                "callback_steps": 1,
            }
        with torch.inference_mode():
            out = self.pipe(
                prompt=prompt,
                negative_prompt=negative_prompt or None,
                image=image.convert("RGB"),
                num_inference_steps=steps,
                guidance_scale=guidance,
                noise_level=NOISE_LEVEL,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="pil",
                **extra,
            )
        flags = getattr(out, "nsfw_content_detected", None) or [False]
        return out.images[0], bool(flags[0])


def fit_within(image: Image.Image, max_side: int, max_pixels: int) -> Image.Image:
    """``image`` shrunk (Lanczos, aspect kept) to at most ``max_side`` a side and ``max_pixels`` in all, its
    sides rounded down to multiples of 8; unchanged when it already fits."""
    w, h = image.size
    scale = min(1.0, max_side / max(w, h), (max_pixels / (w * h)) ** 0.5)
    tw, th = max(8, int(w * scale) // 8 * 8), max(8, int(h * scale) // 8 * 8)
    if (tw, th) == (w, h):
        return image
    return image.resize((tw, th), Image.Resampling.LANCZOS)
