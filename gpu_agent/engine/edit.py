"""Instruction edits: InstructPix2Pix ("make it night", "give him a red scarf") through diffusers.

InstructPix2Pix is SD 1.5 fine-tuned to take the picture to edit as 4 extra UNet input channels (8 in all) and an
instruction as its prompt. Two guidance scales steer it: ``guidance`` (text: how strongly the instruction is
followed) and ``image_guidance`` (how closely the result keeps to the picture). Settings: ``EDIT_MODEL`` names
it (the hub id timbrooks/instruct-pix2pix in the model cache, a local diffusers folder, or ``tiny-ip2p``, the
random test model of engine/tiny.py); it is loaded on the first edit an agent gets, not at start-up.

A member's LoRA can be active during the edit so the face stays theirs: a LoRA of an SD 1.x base fits the
InstructPix2Pix UNet (same attention layers; only the first convolution differs, which LoRAs do not touch) and
text encoder. ``lora_fit`` checks that key by key before loading; a LoRA of another family (SDXL, SD 2.x) is
refused with a message saying so. Members' LoRAs live in the editor's own adapter slots (render_adapters), as in
the Renderer: one active at a time, or none.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from cloud.messages import EDIT_IMAGE_GUIDANCE, EDIT_TEXT_GUIDANCE
from gpu_agent.engine.models import BaseModelError, _from_pretrained
from gpu_agent.engine.pngmeta import GenerationParams, png_bytes
from gpu_agent.engine.render_adapters import AdapterSlots
from gpu_agent.engine.render_prompt import fill_prompt
from gpu_agent.engine.render_types import (
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_SIDE,
    MIN_SIDE,
    BadRenderRequest,
    LoraLoadError,
    LoraRef,
    RenderedImage,
)
from gpu_agent.engine.tiny import TINY_IP2P, build_tiny_ip2p
from gpu_agent.engine.upscale import fit_within

DEFAULT_GUIDANCE = EDIT_TEXT_GUIDANCE
"""Text guidance: InstructPix2Pix's own default (7.5); higher follows the instruction harder."""
DEFAULT_IMAGE_GUIDANCE = EDIT_IMAGE_GUIDANCE
"""Image guidance: the model's default (1.5); higher keeps more of the picture, 1 ignores it almost entirely."""
SAMPLER = "InstructPix2Pix (the model's scheduler)"

Progress = Callable[[int, int], None]

_LORA_SUFFIXES = (
    ".lora.down.weight",
    ".lora.up.weight",
    ".lora_A.weight",
    ".lora_B.weight",
    ".lora_linear_layer.down.weight",
    ".lora_linear_layer.up.weight",
)


@dataclass(frozen=True)
class EditRequest:
    """One edit: ``n`` pictures of ``source`` changed as ``instruction`` says, picture i from seed + i."""

    instruction: str
    source: Image.Image = field(repr=False, compare=False)
    subject: str = ""
    negative_prompt: str = ""
    seed: int = 0
    n: int = 1
    steps: int = 20
    guidance: float = DEFAULT_GUIDANCE
    image_guidance: float = DEFAULT_IMAGE_GUIDANCE

    def __post_init__(self) -> None:
        if not self.instruction.strip():
            raise BadRenderRequest("an edit needs an instruction, e.g. 'make it night'")
        if len(self.instruction) > MAX_PROMPT_CHARS or len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise BadRenderRequest(f"instructions are limited to {MAX_PROMPT_CHARS} characters")
        if not 1 <= self.n <= MAX_IMAGES:
            raise BadRenderRequest(f"count must be between 1 and {MAX_IMAGES}, got {self.n}")
        if not 0 <= self.seed <= MAX_SEED - self.n:
            raise BadRenderRequest(f"seed must be between 0 and {MAX_SEED - self.n}, got {self.seed}")
        if not 1 <= self.steps <= 150:
            raise BadRenderRequest(f"steps must be between 1 and 150, got {self.steps}")
        if not 0 <= self.guidance <= 30:
            raise BadRenderRequest(f"text guidance must be between 0 and 30, got {self.guidance}")
        if not 1 <= self.image_guidance <= 10:
            raise BadRenderRequest(f"image guidance must be between 1 and 10, got {self.image_guidance}")
        if not isinstance(self.source, Image.Image):
            raise BadRenderRequest("an edit needs the picture it changes")
        if min(self.source.size) < MIN_SIDE:
            raise BadRenderRequest(f"the picture to edit is smaller than {MIN_SIDE} px on a side")


@dataclass(frozen=True)
class LoraFit:
    """How a LoRA file's layers meet a pipeline: how many apply, and the first that does not (and why)."""

    applied: int
    total: int
    misfits: tuple[str, ...] = ()
    family: str | None = None
    """The base family the file was evidently made for, when its layers say so ("SDXL", "SD 2.x")."""

    @property
    def fits(self) -> bool:
        return self.total > 0 and not self.misfits


def _module_name(key: str) -> tuple[str, str] | None:
    """(component, module path) of a diffusers/peft LoRA weight key; None for other keys (alphas, metadata)."""
    for suffix in _LORA_SUFFIXES:
        if key.endswith(suffix):
            component, _, path = key.removesuffix(suffix).partition(".")
            return component, path
    return None


def lora_fit(pipe: Any, state_dict: dict[str, torch.Tensor]) -> LoraFit:
    """Check each LoRA weight against the module it targets in ``pipe`` (same name, matching width)."""
    applied, total, misfits = 0, 0, []
    family: str | None = None
    for key, tensor in state_dict.items():
        named = _module_name(key)
        if named is None:
            continue
        component, path = named
        total += 1
        if component == "text_encoder_2":
            family = "SDXL"
        down = any(s in key for s in (".lora.down.", ".lora_A.", ".lora_linear_layer.down."))
        if ".attn2.to_k." in key and down and tensor.ndim == 2:
            # The cross-attention's input is the text encoder's width: 768 SD 1.x, 1024 SD 2.x, 2048 SDXL.
            family = family or {2048: "SDXL", 1024: "SD 2.x"}.get(int(tensor.shape[1]))
        owner = getattr(pipe, component, None)
        try:
            module = owner.get_submodule(path) if owner is not None else None
        except AttributeError:
            module = None
        if module is None or not hasattr(module, "weight"):
            misfits.append(f"{component}.{path}: no such layer")
            continue
        width = module.weight.shape[1] if down else module.weight.shape[0]
        got = tensor.shape[1] if down else tensor.shape[0]
        if int(width) != int(got):
            misfits.append(f"{component}.{path}: {got} wide, the layer is {width}")
            continue
        applied += 1
    return LoraFit(applied, total, tuple(misfits), family)


class Editor:
    """One loaded InstructPix2Pix pipeline and the members' LoRAs resident in it. ``edit`` is thread-safe;
    calls run one at a time."""

    def __init__(
        self,
        model: str,
        *,
        device: torch.device,
        dtype: torch.dtype | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_resident: int = 2,
        max_pixels: int = 2048 * 2048,
    ) -> None:
        from diffusers import StableDiffusionInstructPix2PixPipeline

        from gpu_agent.engine.models import pick_dtype

        dtype = dtype or pick_dtype(device)
        self.model = model
        self.max_pixels = max_pixels
        tiny = model == TINY_IP2P
        pipe = build_tiny_ip2p() if tiny else _from_pretrained(model, dtype=dtype, cache_dir=cache_dir)
        if not isinstance(pipe, StableDiffusionInstructPix2PixPipeline) or pipe.unet.config.in_channels != 8:
            raise BaseModelError(
                f"edit model {model!r} is a {type(pipe).__name__}, not an InstructPix2Pix pipeline "
                "(a StableDiffusionInstructPix2PixPipeline with an 8-channel UNet, e.g. timbrooks/instruct-pix2pix)"
            )
        pipe.to(device)
        if pipe.unet.dtype != dtype:
            pipe.to(dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.adapters = AdapterSlots(pipe, model, max_resident=max_resident)
        self._lock = threading.Lock()
        self._checked: dict[Path, tuple[int, int, int]] = {}

    def check_lora(self, lora: LoraRef) -> LoraFit:
        """Refuse (LoraLoadError, words a member can read) a LoRA whose layers do not fit this model."""
        from gpu_agent.engine.render_adapters import file_fingerprint

        fingerprint = file_fingerprint(lora.path)
        try:
            state_dict, _alphas = self.pipe.lora_state_dict(str(lora.path), local_files_only=True)
        except Exception:
            raise LoraLoadError("Your model's file cannot be read as a LoRA") from None
        fit = lora_fit(self.pipe, state_dict)
        if not fit.fits:
            family = f"an {fit.family}" if fit.family else "another"
            raise LoraLoadError(
                f"Your model was trained on {family} base model, and edits use an SD 1.5-family model "
                f"(InstructPix2Pix): {len(fit.misfits)} of its {fit.total} layers do not fit. "
                "Edit without your model, or train one on an SD 1.5 base."
            )
        self._checked[lora.path] = fingerprint
        return fit

    def edit(
        self, request: EditRequest, lora: LoraRef | None = None, *, progress: Progress | None = None
    ) -> list[RenderedImage]:
        """``request.n`` edited pictures, with ``lora`` active (checked by ``check_lora`` first) or none."""
        try:
            request.source.load()
        except (OSError, Image.DecompressionBombError):
            raise BadRenderRequest("the picture to edit cannot be read") from None
        source = fit_within(request.source.convert("RGB"), MAX_SIDE, self.max_pixels)
        if source.size != request.source.size or any(side % 8 for side in source.size):
            source = source.resize((source.width // 8 * 8, source.height // 8 * 8), Image.Resampling.LANCZOS)
        # With the member's LoRA their token leads the instruction (a personal LoRA draws its member only when
        # its token is in the prompt); without one the instruction goes as written.
        prompt = fill_prompt(request.instruction, request.subject if lora is not None else "")
        with self._lock:
            if lora is not None:
                from gpu_agent.engine.render_adapters import file_fingerprint

                if self._checked.get(lora.path) != file_fingerprint(lora.path):
                    self.check_lora(lora)
            self.adapters.activate(lora)
            images, blanked = self._denoise(request, prompt, source, progress)
        return [
            self._finish(request, prompt, lora, image, request.seed + i, blanked[i])
            for i, image in enumerate(images)
        ]

    def _denoise(
        self, request: EditRequest, prompt: str, source: Image.Image, progress: Progress | None
    ) -> tuple[list[Image.Image], list[bool]]:
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.n)]
        extra: dict[str, Any] = {}
        if progress is not None:
            total = request.steps

            def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                progress(min(step + 1, total), total)
                return kwargs

            extra["callback_on_step_end"] = on_step
        with torch.inference_mode():
            out = self.pipe(
                prompt=prompt,
                image=source,
                negative_prompt=request.negative_prompt or None,
                num_images_per_prompt=request.n,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                image_guidance_scale=request.image_guidance,
                generator=generators,
                output_type="pil",
                **extra,
            )
        images = list(out.images)
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(images)
        return images, [bool(f) for f in flags]

    def _finish(
        self,
        request: EditRequest,
        prompt: str,
        lora: LoraRef | None,
        image: Image.Image,
        seed: int,
        blanked: bool,
    ) -> RenderedImage:
        from gpu_agent.engine.render import SAFETY_CHECKER_MESSAGE
        from gpu_agent.engine.render_hooks import placeholder

        flagged = SAFETY_CHECKER_MESSAGE if blanked else None
        if flagged is not None:
            image = placeholder(image.size)
        params = GenerationParams(
            prompt=prompt,
            negative_prompt=request.negative_prompt,
            seed=seed,
            steps=request.steps,
            guidance=request.guidance,
            sampler=f"{SAMPLER}, image guidance {request.image_guidance:g}",
            width=image.width,
            height=image.height,
            base_model=self.model,
            mode="edit",
            lora=lora.model_id if lora else None,
            flagged=flagged,
        )
        return RenderedImage(
            image=image, seed=seed, png=png_bytes(image, params), params=params, flagged=flagged
        )
