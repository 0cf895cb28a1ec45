"""Generation parameters carried inside the PNG, so a picture says how it was made.

Each field gets its own text chunk (``prompt``, ``seed`` …; iTXt when the text is not Latin-1) and, for tools
that read AUTOMATIC1111's convention (image viewers, civitai, A1111's "PNG Info" tab), the same facts once more as
the single ``parameters`` string. ``read_png_params`` reads our chunks back without decoding the pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, PngImagePlugin, UnidentifiedImageError

SOFTWARE = "Photogen"

_INT_FIELDS = ("seed", "steps", "width", "height")
_FLOAT_FIELDS = ("guidance",)
_TEXT_FIELDS = ("prompt", "negative_prompt", "sampler", "base_model", "mode")
_REQUIRED = _TEXT_FIELDS + _INT_FIELDS + _FLOAT_FIELDS


class PngMetaError(ValueError):
    """Not a PNG, or a PNG without (valid) Photogen generation parameters."""


@dataclass(frozen=True)
class GenerationParams:
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    sampler: str
    width: int
    height: int
    base_model: str
    mode: str
    lora: str | None = None
    """The member's model id, None for a bare base render."""
    strength: float | None = None
    """img2img denoising strength (variation, upscale); None for txt2img."""
    flagged: str | None = None
    """Why the image check replaced this picture with a placeholder; None when it passed."""
    face_detail: int | None = None
    """Faces the face-detail pass redrew (0: it ran and found none to redo); None when it did not run."""

    def a1111(self) -> str:
        """The AUTOMATIC1111-style single ``parameters`` string."""
        facts = [
            f"Steps: {self.steps}",
            f"Sampler: {self.sampler}",
            f"CFG scale: {self.guidance:g}",
            f"Seed: {self.seed}",
            f"Size: {self.width}x{self.height}",
            f"Model: {_one_line(self.base_model)}",
        ]
        if self.strength is not None:
            facts.append(f"Denoising strength: {self.strength:g}")
        if self.lora:
            facts.append(f"Lora: {_one_line(self.lora)}")
        if self.face_detail is not None:
            facts.append(f"Face detail: {self.face_detail}")
        facts.append(f"Mode: {self.mode}")
        facts.append(f"Version: {SOFTWARE}")
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(", ".join(facts))
        return "\n".join(lines)

    def chunks(self) -> dict[str, str]:
        out = {name: str(getattr(self, name)) for name in _REQUIRED}
        for name in ("lora", "strength", "flagged", "face_detail"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        out["parameters"] = self.a1111()
        out["Software"] = SOFTWARE
        return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def png_bytes(image: Image.Image, params: GenerationParams) -> bytes:
    """Encode ``image`` as PNG with ``params`` in text chunks (written before the pixel data)."""
    info = PngImagePlugin.PngInfo()
    for key, value in params.chunks().items():
        # add_text falls back to an iTXt chunk (UTF-8) for text outside Latin-1, e.g. a prompt in Cyrillic.
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_png_params(source: bytes | str | Path | BinaryIO) -> GenerationParams:
    """The generation parameters stored in a Photogen PNG; PngMetaError says what is missing or wrong."""
    stream: BinaryIO | str | Path = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as im:
            if im.format != "PNG":
                raise PngMetaError(f"not a PNG but {im.format}")
            # .info holds the chunks before the image data, which is where png_bytes writes them; reading it
            # decodes no pixels, so a hostile file cannot make this expensive.
            text = {k: str(v) for k, v in im.info.items() if isinstance(v, str)}
    except (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, OSError) as err:
        raise PngMetaError(f"not a readable PNG: {err}") from None
    missing = [name for name in _REQUIRED if name not in text]
    if missing:
        raise PngMetaError(f"PNG carries no Photogen parameters (missing: {', '.join(missing)})")
    try:
        return GenerationParams(
            prompt=text["prompt"],
            negative_prompt=text["negative_prompt"],
            seed=int(text["seed"]),
            steps=int(text["steps"]),
            guidance=float(text["guidance"]),
            sampler=text["sampler"],
            width=int(text["width"]),
            height=int(text["height"]),
            base_model=text["base_model"],
            mode=text["mode"],
            lora=text.get("lora"),
            strength=float(text["strength"]) if "strength" in text else None,
            flagged=text.get("flagged"),
            face_detail=int(text["face_detail"]) if "face_detail" in text else None,
        )
    except ValueError as err:
        raise PngMetaError(f"PNG parameters do not parse: {err}") from None
