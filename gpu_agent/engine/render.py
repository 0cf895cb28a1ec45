"""The Renderer: one base pipeline kept loaded, members' LoRAs swapped in and out of it.

Loading a base model costs seconds to minutes; a member's LoRA is a few megabytes. So an agent loads the base once
(txt2img, plus an img2img pipeline over the very same modules via ``from_pipe``), and for each job loads only the
member's LoRA as a named peft adapter. Up to ``max_resident`` adapters stay in memory, and a new member's LoRA
usually reuses the least recently used one's layers in place (a hotswap); see render_adapters.

No leakage between members: before every render exactly one adapter is active (``set_adapters``) or all LoRA
layers are bypassed (``disable_lora``). An inactive adapter contributes nothing to a layer's output, so a render
with B's LoRA is the same computation as B's LoRA alone in a fresh pipeline, and a render without one is the bare
base; the tests hold this to the exact pixel.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from gpu_agent.engine.face_detail import FACE_PROMPT, FaceDetailConfig, find_faces, paste_back
from gpu_agent.engine.models import model_family
from gpu_agent.engine.pngmeta import GenerationParams, png_bytes
from gpu_agent.engine.preview import PreviewPlan, latents_to_image
from gpu_agent.engine.render_adapters import AdapterSlots, LoadPath
from gpu_agent.engine.render_hooks import (
    ImageCheck,
    PromptCheck,
    allow_all_images,
    allow_all_prompts,
    placeholder,
)
from gpu_agent.engine.render_prompt import fill_prompt
from gpu_agent.engine.render_types import (
    BadRenderRequest,
    LoraRef,
    RenderedImage,
    RenderRequest,
)

if TYPE_CHECKING:
    from storage.settings import Settings

SAFETY_CHECKER_MESSAGE = "the base model's own safety checker blanked it"
SAMPLER = "DPM++ 2M Karras"
"""DPM-Solver++ (2nd order multistep) with Karras sigmas: good faces in 20-30 steps, and deterministic."""

DEFAULT_MAX_PIXELS = 2048 * 2048

Progress = Callable[[int, int], None]
"""progress(step, total), called after each denoising step."""


def dpm_solver_pp(scheduler_config: Any) -> Any:
    """The default sampler, built from the base model's own scheduler config (its betas and timestep spacing)."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(
        scheduler_config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )


class Renderer:
    """Renders RenderRequests on one loaded base model, with members' LoRAs swapped in per call.

    ``device`` is "auto", "cpu", "cuda[:N]" or "mps"; ``dtype`` None picks the device's (bf16/fp16 on GPUs,
    bf16 on CPUs with native bf16, else fp32: models.pick_dtype). ``render`` is safe to call from several
    threads; calls run one at a time (one GPU, one
    pipeline). ``hotswap`` False makes every new LoRA a new adapter (the slower path; see render_adapters).
    """

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        prompt_check: PromptCheck | None = None,
        image_check: ImageCheck | None = None,
    ) -> Renderer:
        """The agent's renderer: base model, device, model cache, resident LoRAs and pixel cap from settings."""
        return cls(
            settings.base_model,
            device=settings.device,
            cache_dir=settings.model_cache_dir,
            prompt_check=prompt_check,
            image_check=image_check,
            max_resident=settings.render_resident_loras,
            max_pixels=settings.render_max_pixels,
            face_detail=FaceDetailConfig.from_settings(settings),
            upscaler_model=settings.upscaler_model,
            upscale_refine=settings.upscale_refine,
        )

    def __init__(
        self,
        base_model: str,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        cache_dir: str | Path | None = None,
        prompt_check: PromptCheck | None = None,
        image_check: ImageCheck | None = None,
        max_resident: int = 4,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        hotswap: bool = True,
        face_detail: FaceDetailConfig | None = None,
        upscaler_model: str = "",
        upscale_refine: bool = False,
    ) -> None:
        from diffusers import AutoPipelineForImage2Image

        from gpu_agent.engine.models import load_base_pipeline, pick_device

        if max_resident < 1:
            raise ValueError("max_resident must be at least 1")
        self.base_model = base_model
        self.device = pick_device(device)
        self.max_resident = max_resident
        self.max_pixels = max_pixels
        self._prompt_check = prompt_check or allow_all_prompts
        self._image_check = image_check or allow_all_images
        self.face_detail = face_detail or FaceDetailConfig()
        self._lock = threading.Lock()

        pipe = load_base_pipeline(base_model, device=self.device, dtype=dtype, cache_dir=cache_dir)
        pipe.scheduler = dpm_solver_pp(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self._txt2img = pipe
        # from_pipe reuses pipe's modules (no second copy of any weight), so an adapter loaded into the UNet
        # is there for both pipelines.
        self._img2img = AutoPipelineForImage2Image.from_pipe(pipe)
        self._img2img.set_progress_bar_config(disable=True)
        self.adapters = AdapterSlots(pipe, base_model, max_resident=max_resident, hotswap=hotswap)
        self.upscale_refine = upscale_refine
        self.upscaler = _load_upscaler(upscaler_model, self.device, pipe.unet.dtype, cache_dir)

    # --- public ---------------------------------------------------------------------------------------------

    @property
    def resident_models(self) -> list[str]:
        """Model ids whose adapters are loaded, least recently used first."""
        return self.adapters.resident_models

    @property
    def pipelines(self) -> tuple[Any, Any]:
        """(txt2img, img2img), sharing their modules."""
        return self._txt2img, self._img2img

    @property
    def lock(self) -> threading.Lock:
        """Held while the pipelines work (the group composer, engine/group, holds it for a whole picture)."""
        return self._lock

    def check_prompt(self, prompt: str) -> None:
        """The prompt check every render passes (raises PromptRefused)."""
        self._prompt_check(prompt)

    def image_refusal(self, image: Image.Image) -> str | None:
        """Why the image check refuses ``image``; None when it passes."""
        verdict = self._image_check(image)
        return None if verdict.safe else (verdict.reason or "the image check refused it")

    def render(
        self,
        request: RenderRequest,
        lora: LoraRef | None = None,
        *,
        progress: Progress | None = None,
        preview: PreviewPlan | None = None,
    ) -> list[RenderedImage]:
        """Render ``request.n`` images, image i from seed ``request.seed + i``, with ``lora`` or the bare base.

        Raises BadRenderRequest (e.g. over the pixel cap), PromptRefused (the prompt check said no) or
        LoraLoadError, each before any denoising. Modes: txt2img; variation (img2img from a previous render at
        moderate strength); upscale: the learned x4 upscaler when one is configured (engine/upscale.py, then
        optionally the refine pass below), else the fallback: Lanczos 2x, then img2img at low strength to
        redraw the fine detail. A picture the base model's own safety checker blanks comes back ``flagged``.
        ``preview``: after each denoising step but the last, when ``preview.due()``, the first image's latents
        as a thumbnail (latent-to-RGB, no VAE decode) go to ``preview.deliver(step, total, image)``.
        """
        width, height = request.output_size
        if width * height > self.max_pixels:
            raise BadRenderRequest(
                f"{width}x{height} is more than this renderer's {self.max_pixels:,} pixel limit"
            )
        if request.source is not None:
            try:
                # Decode now: PIL opens lazily, and a truncated upload must fail as a bad request, not as an
                # OSError in the middle of denoising.
                request.source.load()
            except (OSError, Image.DecompressionBombError):
                raise BadRenderRequest("the picture this render starts from cannot be read") from None
        prompt = fill_prompt(request.prompt, request.subject)
        self._prompt_check(prompt)
        if request.mode == "upscale" and self.upscaler is not None:
            import dataclasses

            # Picture i from seed + i, as for the other modes (the U button asks for one).
            ones = [dataclasses.replace(request, n=1, seed=request.seed + i) for i in range(request.n)]
            return [self._upscale_learned(one, prompt, lora, progress) for one in ones]
        with self._lock:
            self.adapters.activate(lora)
            images, blanked = self._denoise(request, prompt, width, height, progress, preview)
            images, faces = self._detail_faces(request, images)
        return [
            self._finish(
                request,
                prompt,
                lora,
                image,
                request.seed + i,
                faces[i],
                blanked=blanked[i],
                strength=request.effective_strength,
            )
            for i, image in enumerate(images)
        ]

    def load(self, lora: LoraRef) -> LoadPath:
        """Make ``lora`` resident (and active) without rendering, e.g. while a job's source image downloads.

        Returns how: "resident" (it already was), "hotswap" (it took over the least recently used slot) or
        "inject" (a new adapter). Raises LoraLoadError as render would.
        """
        with self._lock:
            path = self.adapters.activate(lora)
        assert path is not None
        return path

    def evict(self, model_id: str) -> bool:
        """Drop a model's adapter (e.g. the member deleted it); True when it was resident."""
        with self._lock:
            return self.adapters.evict(model_id)

    # --- denoising ------------------------------------------------------------------------------------------

    def _upscale_learned(
        self, request: RenderRequest, prompt: str, lora: LoraRef | None, progress: Progress | None
    ) -> RenderedImage:
        """The learned x4 upscaler on the source (shrunk to the caps if 4x is over them), then, with
        ``upscale_refine``, the fallback's light re-denoise over the result with the member's LoRA."""
        import dataclasses

        from gpu_agent.engine.render_types import MAX_SIDE
        from gpu_agent.engine.upscale import fit_within

        assert request.source is not None and self.upscaler is not None
        with self._lock:
            image, blanked = self.upscaler.upscale(
                request.source,
                prompt=prompt,
                negative_prompt=request.negative_prompt,
                seed=request.seed,
                steps=request.steps,
                guidance=request.guidance,
                progress=progress,
            )
            image = fit_within(image, MAX_SIDE, self.max_pixels)
            refined: float | None = None
            if self.upscale_refine and not blanked:
                refined = request.effective_strength
                # The refine pass keeps this size: the request's source becomes the upscaled picture at 1x.
                again = dataclasses.replace(request, mode="variation", source=image, strength=refined, n=1)
                self.adapters.activate(lora)
                images, flags = self._denoise(again, prompt, image.width, image.height, progress)
                image, blanked = images[0], flags[0]
        return self._finish(
            request,
            prompt,
            lora,
            image,
            request.seed,
            blanked=blanked,
            sampler=f"x4 upscaler {self.upscaler.model}",
            strength=refined,
        )

    def _denoise(
        self,
        request: RenderRequest,
        prompt: str,
        width: int,
        height: int,
        progress: Progress | None,
        preview: PreviewPlan | None = None,
    ) -> tuple[list[Image.Image], list[bool]]:
        """The pictures, and for each whether the pipeline's own safety checker blanked it (SD 1.x hub models
        ship diffusers' StableDiffusionSafetyChecker, which returns a black picture and says so in
        ``nsfw_content_detected``; the tiny test models have none)."""
        # One CPU generator per image: image i is the same picture on any device, and re-rendering seed+i
        # alone reproduces it.
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.n)]
        common: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": request.negative_prompt or None,
            "num_images_per_prompt": request.n,
            "guidance_scale": request.guidance,
            "generator": generators,
            "output_type": "pil",
        }
        extra: dict[str, Any]
        if request.mode == "txt2img":
            steps = request.steps
            pipe, extra = self._txt2img, {"width": width, "height": height}
        else:
            assert request.source is not None  # RenderRequest checks it
            strength = request.effective_strength
            assert strength is not None
            start = request.source.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
            # img2img runs only steps*strength of the schedule; at least one step must remain.
            steps = max(request.steps, math.ceil(1 / strength))
            pipe, extra = self._img2img, {"image": start, "strength": strength}
        if progress is not None or preview is not None:
            total = max(1, int(steps * (extra.get("strength") or 1.0)))
            family = model_family(pipe)

            def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                done = min(step + 1, total)
                if preview is not None and done < total and preview.due():
                    preview.deliver(done, total, latents_to_image(kwargs["latents"], family))
                if progress is not None:
                    progress(done, total)
                return kwargs

            extra["callback_on_step_end"] = on_step
        with torch.inference_mode():
            out = pipe(num_inference_steps=steps, **common, **extra)
        images = list(out.images)
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(images)
        return images, [bool(f) for f in flags]

    def _detail_faces(
        self, request: RenderRequest, images: list[Image.Image]
    ) -> tuple[list[Image.Image], list[int | None]]:
        """Face detail (see face_detail): each small face redrawn at the model's native size and blended back.

        Runs under the render lock right after denoising, so the member's adapter is still the active one.
        Returns the pictures and, per picture, how many faces were redrawn (None when the request did not
        ask for the pass).
        A face crop is img2img'd with FACE_PROMPT, the request's negative prompt and guidance, from the
        picture's own seed: re-rendering one seed reproduces its faces too.
        """
        if not request.face_detail:
            return images, [None] * len(images)
        config = self.face_detail
        pipe = self._img2img
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        prompt = fill_prompt(FACE_PROMPT, request.subject)
        steps = max(request.steps, math.ceil(1 / config.strength))
        done: list[Image.Image] = []
        counts: list[int | None] = []
        for i, image in enumerate(images):
            regions = find_faces(image, config)
            for region in regions:
                size = max(native, -(-region.side // 8) * 8)  # never below the crop's own resolution
                crop = image.crop(region.box).resize((size, size), Image.Resampling.LANCZOS)
                with torch.inference_mode():
                    (redone,) = pipe(
                        prompt=prompt,
                        negative_prompt=request.negative_prompt or None,
                        image=crop,
                        strength=config.strength,
                        num_inference_steps=steps,
                        guidance_scale=request.guidance,
                        generator=torch.Generator("cpu").manual_seed(request.seed + i),
                        output_type="pil",
                    ).images
                image = paste_back(image, region.box, redone, config.feather)
            done.append(image)
            counts.append(len(regions))
        return done, counts

    def _finish(
        self,
        request: RenderRequest,
        prompt: str,
        lora: LoraRef | None,
        image: Image.Image,
        seed: int,
        face_detail: int | None = None,
        *,
        blanked: bool = False,
        sampler: str = SAMPLER,
        strength: float | None = None,
    ) -> RenderedImage:
        if blanked:
            flagged: str | None = SAFETY_CHECKER_MESSAGE
        else:
            verdict = self._image_check(image)
            flagged = None if verdict.safe else (verdict.reason or "the image check refused it")
        if flagged is not None:
            image = placeholder(image.size)
        params = GenerationParams(
            prompt=prompt,
            negative_prompt=request.negative_prompt,
            seed=seed,
            steps=request.steps,
            guidance=request.guidance,
            sampler=sampler,
            width=image.width,
            height=image.height,
            base_model=self.base_model,
            mode=request.mode,
            lora=lora.model_id if lora else None,
            strength=strength,
            flagged=flagged,
            face_detail=face_detail,
        )
        return RenderedImage(
            image=image, seed=seed, png=png_bytes(image, params), params=params, flagged=flagged
        )


def _load_upscaler(model: str, device: torch.device, dtype: torch.dtype, cache_dir: str | Path | None) -> Any:
    """The learned upscaler named by ``upscaler_model``, or None (empty, or it cannot be loaded: the U button
    then keeps working with the fallback re-denoise, and the log says why)."""
    if not model:
        return None
    import logging

    from gpu_agent.engine.models import BaseModelError
    from gpu_agent.engine.upscale import Upscaler

    try:
        return Upscaler(model, device=device, dtype=dtype, cache_dir=cache_dir)
    except BaseModelError as err:
        logging.getLogger(__name__).error("upscaler not loaded, U uses the re-denoise fallback: %s", err)
        return None
