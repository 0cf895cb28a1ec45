"""Style presets: named prompt templates with the settings that suit them, shipped as data (presets.json).

A preset is what a member picks instead of writing a prompt ("professional headshot", "in Rome"). Adding one is
editing the JSON file, not the code; every entry is validated when the file is loaded.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from gpu_agent.engine.render_prompt import SUBJECT, fill_prompt

PRESETS_FILE = "presets.json"

#: The four styles the product launched with; the bot's menu leads with them.
LAUNCH_PRESET_IDS = ("headshot", "eiffel-tower", "kremlin", "rome")

_ASPECT = re.compile(r"^([1-9][0-9]?):([1-9][0-9]?)$")


class PresetError(ValueError):
    """An unknown preset id, or a presets file that does not validate."""


class StylePreset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    title: str = Field(min_length=1, max_length=80)
    description: str = Field("", max_length=200)
    prompt: str = Field(min_length=1, max_length=1000, description="Template with {subject}.")
    negative_prompt: str = Field("", max_length=1000)
    guidance: float = Field(ge=0, le=30, description="Suggested classifier-free guidance scale.")
    steps: int = Field(ge=1, le=150, description="Suggested denoising steps.")
    aspect: str = Field(description="Width:height, e.g. 4:5 for a portrait headshot.")
    launch: bool = Field(False, description="One of the styles the product launched with.")
    face_detail: bool = Field(
        False,
        description="Redraw small faces at full resolution (full-body and landmark styles, not close-ups).",
    )

    @field_validator("prompt")
    @classmethod
    def _has_subject(cls, v: str) -> str:
        if SUBJECT not in v:
            raise ValueError("prompt template must contain {subject}")
        return v

    @field_validator("aspect")
    @classmethod
    def _aspect(cls, v: str) -> str:
        if not _ASPECT.fullmatch(v):
            raise ValueError("aspect must look like 4:5")
        return v

    def prompt_for(self, subject: str) -> str:
        return fill_prompt(self.prompt, subject)

    def size(self, long_side: int = 512) -> tuple[int, int]:
        """(width, height) with this preset's aspect, the longer side ``long_side``, both multiples of 8."""
        if long_side < 64 or long_side % 8:
            raise PresetError(f"long side must be a multiple of 8 and at least 64, got {long_side}")
        match = _ASPECT.fullmatch(self.aspect)
        assert match is not None  # validated on load
        w, h = int(match.group(1)), int(match.group(2))
        scale = long_side / max(w, h)
        return max(64, round(w * scale / 8) * 8), max(64, round(h * scale / 8) * 8)


class PresetBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1, le=1)
    presets: list[StylePreset] = Field(min_length=1)

    @field_validator("presets")
    @classmethod
    def _unique(cls, v: list[StylePreset]) -> list[StylePreset]:
        seen: set[str] = set()
        for preset in v:
            if preset.id in seen:
                raise ValueError(f"preset id {preset.id!r} appears twice")
            seen.add(preset.id)
        return v


def parse_presets(text: str | bytes) -> dict[str, StylePreset]:
    """Validate a presets document; raise PresetError naming the first problem."""
    try:
        book = PresetBook.model_validate(json.loads(text))
    except json.JSONDecodeError as err:
        raise PresetError(f"presets file is not JSON: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PresetError(f"bad presets file at {where}: {first['msg']}") from None
    return {p.id: p for p in book.presets}


def load_presets(path: str | Path | None = None) -> dict[str, StylePreset]:
    """The presets in ``path``, or the ones shipped with the package when no path is given."""
    if path is not None:
        return parse_presets(Path(path).read_bytes())
    return dict(_shipped())


@lru_cache(maxsize=1)
def _shipped() -> dict[str, StylePreset]:
    return parse_presets(resources.files("gpu_agent.engine").joinpath(PRESETS_FILE).read_bytes())


def get_preset(preset_id: str, presets: dict[str, StylePreset] | None = None) -> StylePreset:
    """The preset with this id; PresetError listing the known ids otherwise."""
    book = _shipped() if presets is None else presets
    try:
        return book[preset_id]
    except KeyError:
        known = ", ".join(sorted(book))
        raise PresetError(f"unknown style preset {preset_id[:40]!r}; known presets: {known}") from None
