"""The group pipeline's own models, each chosen by a setting: the pose ControlNet and the CLIPSeg segmenter.

A setting is a built-in tiny test model (``tiny-controlnet``, ``tiny-clipseg``), a local folder, or a Hugging
Face hub id read from the model cache (MODEL_CACHE_DIR), the rule base models follow (model_source): an agent
never downloads at render time unless the hub is reachable, and an offline miss says which command fetches it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gpu_agent.engine.model_source import download_command, resolve_model_source
from gpu_agent.engine.models import BaseModelError
from gpu_agent.engine.tiny import TINY_CLIPSEG, TINY_CONTROLNET, build_tiny_clipseg, build_tiny_controlnet

CacheDir = str | os.PathLike[str] | None


def load_controlnet(setting: str, unet: Any, *, cache_dir: CacheDir = None) -> Any:
    """The pose ControlNet for the base whose UNet is ``unet`` (its device and dtype). Raises BaseModelError
    when it cannot be had, or when it was trained for another base family than ``unet``'s."""
    if setting == TINY_CONTROLNET:
        return build_tiny_controlnet(unet)
    from diffusers import ControlNetModel

    controlnet = _pretrained(
        "pose ControlNet",
        setting,
        cache_dir,
        lambda where, **kw: ControlNetModel.from_pretrained(where, torch_dtype=unet.dtype, **kw),
    )
    mine, theirs = controlnet.config.cross_attention_dim, unet.config.cross_attention_dim
    if mine != theirs:
        raise BaseModelError(
            f"pose ControlNet {setting!r} was trained for another base model family than the base model "
            f"(text features {mine} wide, the base's {theirs}); set GROUP_CONTROLNET_MODEL to one for this base"
        )
    return controlnet.to(unet.device).eval()


def skip_when_off(controlnet: Any) -> Any:
    """``controlnet``, made to skip its forward pass when called at conditioning scale 0.

    Past ``control_guidance_end`` diffusers' ControlNet pipelines still run the ControlNet at every step and
    multiply its residuals by 0. Here such a call returns zeros of the residuals' shapes (those of its last real
    call on the same input shape) without computing them: the UNet adds the same zeros, for nothing.
    """
    if getattr(controlnet, "_skips_when_off", False):
        return controlnet
    forward = controlnet.forward
    shapes: dict[tuple[int, ...], tuple[list[torch.Size], torch.Size]] = {}

    def gated(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        key = tuple(sample.shape)
        scale = kwargs.get("conditioning_scale", 1.0)
        if isinstance(scale, int | float) and scale == 0 and key in shapes:
            down, mid = shapes[key]
            zeros = [sample.new_zeros(shape) for shape in down]
            middle = sample.new_zeros(mid)
            if kwargs.get("return_dict", True):
                from diffusers.models.controlnets.controlnet import ControlNetOutput

                return ControlNetOutput(down_block_res_samples=tuple(zeros), mid_block_res_sample=middle)
            return zeros, middle
        out = forward(sample, *args, **kwargs)
        down_out, mid_out = (
            (out.down_block_res_samples, out.mid_block_res_sample)
            if hasattr(out, "mid_block_res_sample")
            else out
        )
        shapes[key] = ([d.shape for d in down_out], mid_out.shape)
        return out

    controlnet.forward = gated
    controlnet._skips_when_off = True
    return controlnet


class Segmenter:
    """CLIPSeg: how much each pixel of a picture shows what a short text names ("a person")."""

    def __init__(self, model: Any, processor: Any, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device

    @classmethod
    def load(cls, setting: str, *, device: torch.device, cache_dir: CacheDir = None) -> Segmenter:
        if setting == TINY_CLIPSEG:
            return cls(*build_tiny_clipseg(), device)
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        def both(where: str, **kw: Any) -> tuple[Any, Any]:
            return (
                CLIPSegForImageSegmentation.from_pretrained(where, **kw),
                CLIPSegProcessor.from_pretrained(where, **kw),
            )

        model, processor = _pretrained("CLIPSeg segmenter", setting, cache_dir, both)
        return cls(model, processor, device)

    def heat(self, image: Image.Image, text: str) -> np.ndarray:
        """Per pixel of ``image`` (height × width), the probability in [0, 1] that it shows ``text``."""
        inputs = self.processor(
            text=[text], images=[image.convert("RGB")], padding="max_length", return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits
        probability = torch.sigmoid(logits.float()).reshape(logits.shape[-2:]).cpu().numpy()
        small = Image.fromarray(probability.astype(np.float32), mode="F")
        return np.asarray(small.resize(image.size, Image.Resampling.BILINEAR), dtype=np.float32)


def _pretrained(what: str, setting: str, cache_dir: CacheDir, load: Callable[..., Any]) -> Any:
    """``load(folder_or_id, **kwargs)`` for a local folder or a hub id in the cache, with the base model's
    rules and messages (BaseModelError) when it is not there."""
    source = resolve_model_source(setting)
    if source.kind in ("folder", "file"):
        path = Path(setting).expanduser()
        if not path.is_dir():
            raise BaseModelError(f"{what} {setting!r}: no such folder on this machine")
        try:
            return load(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BaseModelError(f"{what} {setting!r} could not be loaded from disk: {exc}") from exc
    if source.kind != "hub":
        raise BaseModelError(
            f"{what} {setting!r} is neither a built-in test model, a local folder, nor a hub id"
        )
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        return load(
            setting, cache_dir=None if cache_dir is None else str(cache_dir), local_files_only=offline
        )
    except (OSError, ValueError) as exc:
        where = f"the model cache {cache_dir}" if cache_dir else "the Hugging Face cache"
        raise BaseModelError(
            f"{what} {setting!r} is not in {where}"
            + (" and this machine is offline (HF_HUB_OFFLINE=1)" if offline else " and could not be fetched")
            + f": download it on a machine with internet (`{download_command(setting, str(cache_dir or '<cache>'))}`)"
            " and copy the cache here"
        ) from exc
