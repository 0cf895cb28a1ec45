"""Class images for prior preservation: rendered by the base model itself, cached in a folder per base model,
class prompt and resolution so the next member with the same class word pays nothing. The agent passes its own
folder (filled from, and uploaded back to, the shared blob store); a plain call caches under ``cache_root``."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

# Rendered a few at a time: enough to keep a GPU busy, few enough for a small card at 1024 px.
_RENDER_BATCH = 4


def class_image_dir(
    cache_root: Path, base_model: str, class_prompt: str, resolution: int, steps: int
) -> Path:
    """Where the class images of this base model, prompt and size live (safe for any base-model string)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", base_model).strip("-.")[:60] or "model"
    key = hashlib.sha256(f"{base_model}\n{class_prompt}\n{resolution}\n{steps}".encode()).hexdigest()[:16]
    return cache_root / "class_images" / f"{slug}-{key}"


def class_images(
    pipe: Any,
    *,
    cache_root: Path,
    base_model: str,
    class_prompt: str,
    count: int,
    resolution: int,
    steps: int,
    seed: int = 0,
    folder: Path | None = None,
    on_step_end: Callable[..., dict[str, Any]] | None = None,
) -> tuple[list[Image.Image], int]:
    """``count`` class images: those already in ``folder`` (default: the cache under ``cache_root``), plus newly
    rendered ones (image i from seed + i); and how many were rendered. ``on_step_end`` is the pipeline's
    step callback (the trainer's: it stops the rendering if the photos it waits for were refused)."""
    folder = folder or class_image_dir(cache_root, base_model, class_prompt, resolution, steps)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.png" for i in range(count)]
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    for start in range(0, len(missing), _RENDER_BATCH):
        chunk = missing[start : start + _RENDER_BATCH]
        generators = [torch.Generator("cpu").manual_seed(seed + i) for i in chunk]
        with torch.no_grad():
            rendered = pipe(
                prompt=[class_prompt] * len(chunk),
                height=resolution,
                width=resolution,
                num_inference_steps=steps,
                generator=generators,
                callback_on_step_end=on_step_end,
            ).images
        for i, image in zip(chunk, rendered, strict=True):
            _save_png_atomically(image, paths[i])
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(image.convert("RGB"))
    return images, len(missing)


def _save_png_atomically(image: Image.Image, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            image.save(out, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
