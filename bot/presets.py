"""Style presets for /imagine, read from the render engine's presets.json by path.

The engine's own loader lives in gpu_agent.engine, whose package may import torch; the bot must stay torch-free,
so it reads the same data file (one source of truth) and keeps only what it needs to build a RenderJob.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.errors import Refused

ASPECTS = ("1:1", "4:5", "2:3", "3:2", "16:9", "9:16")
_ASPECT = re.compile(r"^([1-9][0-9]?):([1-9][0-9]?)$")


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    prompt: str
    negative_prompt: str
    guidance: float
    aspect: str
    launch: bool
    face_detail: bool
    """Full-body and landmark styles: small faces are redrawn at full resolution (not close-ups)."""


def _presets_file() -> Path:
    spec = importlib.util.find_spec("gpu_agent")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gpu_agent package not found")
    return Path(next(iter(spec.submodule_search_locations))) / "engine" / "presets.json"


@lru_cache(maxsize=1)
def presets() -> dict[str, Preset]:
    """Launch presets first (they lead the menu), then the rest in file order."""
    data = json.loads(_presets_file().read_text(encoding="utf-8"))
    items = [
        Preset(
            id=p["id"],
            title=p["title"],
            prompt=p["prompt"],
            negative_prompt=p.get("negative_prompt", ""),
            guidance=float(p.get("guidance", 7.0)),
            aspect=p.get("aspect", "1:1"),
            launch=bool(p.get("launch", False)),
            face_detail=bool(p.get("face_detail", False)),
        )
        for p in data["presets"]
    ]
    items.sort(key=lambda p: not p.launch)
    return {p.id: p for p in items}


def get(preset_id: str) -> Preset:
    try:
        return presets()[preset_id]
    except KeyError:
        raise Refused(f"Unknown style preset {preset_id[:40]!r}.") from None


def size_for(aspect: str, long_side: int) -> tuple[int, int]:
    """(width, height), the longer side ``long_side``, both multiples of 8 (the engine's rule)."""
    match = _ASPECT.fullmatch(aspect)
    if match is None:
        raise Refused(f"Unknown aspect ratio {aspect[:10]!r}; use one of {', '.join(ASPECTS)}.")
    w, h = int(match[1]), int(match[2])
    scale = long_side / max(w, h)
    return max(64, round(w * scale / 8) * 8), max(64, round(h * scale / 8) * 8)
