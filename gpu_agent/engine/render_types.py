"""What a render is asked for and what it gives back: RenderRequest, LoraRef, RenderedImage.

A RenderRequest validates itself on construction, so a bad request is refused with a specific message before any
model work starts. The renderer adds the one check that depends on the machine (the pixel cap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from PIL import Image

from gpu_agent.engine.pngmeta import GenerationParams
from gpu_agent.engine.presets import StylePreset
from gpu_agent.engine.render_prompt import TemplateError, check_template
from storage.contracts import is_id

if TYPE_CHECKING:
    from cloud.messages import RenderJob

RenderMode = Literal["txt2img", "variation", "upscale"]
MODES: tuple[str, ...] = get_args(RenderMode)

MAX_IMAGES = 8
MIN_SIDE = 64
MAX_SIDE = 2048
MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**63 - 1
UPSCALE_FACTOR = 2
#: Denoising strength when a request names none: a variation keeps the composition and redraws the details;
#: an upscale only sharpens what the Lanczos resize blurred.
DEFAULT_STRENGTH: dict[str, float] = {"variation": 0.6, "upscale": 0.3}


class RenderError(Exception):
    """Base of the renderer's errors; messages are safe to show to the member."""


class BadRenderRequest(RenderError, ValueError):
    """A request the renderer refuses, with the reason."""


class LoraLoadError(RenderError):
    """A member's LoRA file that cannot be used with this base model."""


@dataclass(frozen=True)
class LoraRef:
    """A member's trained LoRA, already fetched from the blob store to a local .safetensors file."""

    model_id: str
    path: Path
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not is_id(self.model_id):
            raise BadRenderRequest(f"model id {str(self.model_id)[:70]!r} is not a valid id")
        object.__setattr__(self, "path", Path(self.path))
        if not 0.0 <= self.scale <= 2.0:
            raise BadRenderRequest(f"LoRA scale must be between 0 and 2, got {self.scale}")

    @property
    def adapter_name(self) -> str:
        # The key the Renderer remembers this model's LoRA under (the layers it lives in are a slot, see
        # render_adapters): the same member's model is recognised when it comes back.
        return f"m_{self.model_id}"


@dataclass(frozen=True)
class RenderRequest:
    """One render call: ``n`` images of ``prompt`` (a template with ``{subject}``) from seeds seed, seed+1 …

    Sizes: txt2img renders ``width`` x ``height``. A variation keeps the source's size and an upscale doubles
    it (both rounded down to multiples of 8); ``width``/``height`` are ignored for them.
    """

    prompt: str
    subject: str = ""
    negative_prompt: str = ""
    seed: int = 0
    n: int = 1
    width: int = 512
    height: int = 512
    steps: int = 30
    guidance: float = 7.0
    mode: RenderMode = "txt2img"
    source: Image.Image | None = field(default=None, repr=False, compare=False)
    strength: float | None = None
    face_detail: bool = False
    """Redraw the picture's small faces at full resolution afterwards (see face_detail)."""

    def __post_init__(self) -> None:
        try:
            check_template(self.prompt)
        except TemplateError as err:
            raise BadRenderRequest(str(err)) from None
        if len(self.prompt) > MAX_PROMPT_CHARS or len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise BadRenderRequest(f"prompts are limited to {MAX_PROMPT_CHARS} characters")
        if len(self.subject) > 64:
            raise BadRenderRequest("the subject is limited to 64 characters")
        if self.mode not in MODES:
            raise BadRenderRequest(
                f"mode {str(self.mode)[:20]!r} is not supported; use one of {', '.join(MODES)}"
            )
        if not 1 <= self.n <= MAX_IMAGES:
            raise BadRenderRequest(f"count must be between 1 and {MAX_IMAGES}, got {self.n}")
        if not 0 <= self.seed <= MAX_SEED - self.n:
            raise BadRenderRequest(f"seed must be between 0 and {MAX_SEED - self.n}, got {self.seed}")
        if not 1 <= self.steps <= 150:
            raise BadRenderRequest(f"steps must be between 1 and 150, got {self.steps}")
        if not 0 <= self.guidance <= 30:
            raise BadRenderRequest(f"guidance must be between 0 and 30, got {self.guidance}")
        if self.mode == "txt2img":
            self._check_size(self.width, self.height, "size")
            if self.source is not None:
                raise BadRenderRequest("a txt2img render takes no source image; use variation or upscale")
            if self.strength is not None:
                raise BadRenderRequest("strength applies only to variation and upscale")
            return
        if not isinstance(self.source, Image.Image):
            raise BadRenderRequest(f"{self.mode} needs the source image it starts from")
        if self.strength is not None and not 0 < self.strength <= 1:
            raise BadRenderRequest(f"strength must be in (0, 1], got {self.strength}")
        if min(self.source.size) < MIN_SIDE:
            raise BadRenderRequest(f"the source image is smaller than {MIN_SIDE} px on a side")
        self._check_size(*self.output_size, f"{self.mode} size")

    @staticmethod
    def _check_size(width: int, height: int, what: str) -> None:
        for name, side in (("width", width), ("height", height)):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise BadRenderRequest(
                    f"{what}: {name} must be between {MIN_SIDE} and {MAX_SIDE}, got {side}"
                )
            if side % 8:
                raise BadRenderRequest(f"{what}: {name} must be a multiple of 8, got {side}")

    @property
    def output_size(self) -> tuple[int, int]:
        if self.mode == "txt2img" or self.source is None:
            return self.width, self.height
        w, h = self.source.size
        if self.mode == "upscale":
            w, h = w * UPSCALE_FACTOR, h * UPSCALE_FACTOR
        return w // 8 * 8, h // 8 * 8

    @property
    def effective_strength(self) -> float | None:
        if self.mode == "txt2img":
            return None
        return self.strength if self.strength is not None else DEFAULT_STRENGTH[self.mode]

    @classmethod
    def from_preset(
        cls, preset: StylePreset, subject: str, *, seed: int = 0, n: int = 1, long_side: int = 512
    ) -> RenderRequest:
        """A txt2img request in a preset's style, at its aspect with the longer side ``long_side``."""
        width, height = preset.size(long_side)
        return cls(
            prompt=preset.prompt,
            subject=subject,
            negative_prompt=preset.negative_prompt,
            seed=seed,
            n=n,
            width=width,
            height=height,
            steps=preset.steps,
            guidance=preset.guidance,
            face_detail=preset.face_detail,
        )

    @classmethod
    def from_job(cls, job: RenderJob, source: Image.Image | None = None) -> RenderRequest:
        """The request a RenderJob message asks for; ``source`` is its source_key's image, already fetched."""
        if job.mode not in MODES:
            raise BadRenderRequest(f"mode {job.mode!r} is not supported; use one of {', '.join(MODES)}")
        # RenderJob.strength is None unless the member asked for one: each mode then uses its own default.
        strength = job.strength if job.mode != "txt2img" else None
        return cls(
            prompt=job.prompt,
            subject=job.subject,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            n=job.count,
            width=job.width,
            height=job.height,
            steps=job.steps,
            guidance=job.guidance,
            mode=job.mode,  # type: ignore[arg-type]
            source=source,
            strength=strength,
            face_detail=job.face_detail,
        )


@dataclass(frozen=True)
class RenderedImage:
    """One finished picture. ``png`` is what gets stored and posted; it carries ``params`` in text chunks."""

    image: Image.Image = field(repr=False)
    seed: int
    png: bytes = field(repr=False)
    params: GenerationParams
    flagged: str | None = None
    """Why the image check replaced this picture with a black placeholder; None when it passed."""
