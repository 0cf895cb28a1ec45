"""Where a BASE_MODEL setting points: one rule, torch-free, shared by the engine (models.load_base_pipeline)
and `photogen doctor` (which must run on a bot-only host without the ML stack).

A setting is a built-in tiny test model, a local path (absolute, relative to the working folder, ``~``, or a
single weights file), or a Hugging Face hub id looked up in the model cache (MODEL_CACHE_DIR, hub layout).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TINY_MODELS = ("tiny-sd", "tiny-sdxl")

# "org/name" or a bare "name" as the Hugging Face hub spells repository ids.
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")

SourceKind = Literal["tiny", "folder", "file", "hub", "invalid"]


@dataclass(frozen=True)
class ModelSource:
    setting: str
    kind: SourceKind
    path: Path | None = None  # folder/file: the path on this machine


def looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~"))
        or "\\" in name
        or name.endswith(SINGLE_FILE_SUFFIXES)
        or Path(name).expanduser().exists()
    )


def resolve_model_source(base_model: str) -> ModelSource:
    """What kind of thing ``base_model`` names, by the one rule the agent loads it with."""
    if base_model in TINY_MODELS:
        return ModelSource(base_model, "tiny")
    if looks_like_path(base_model):
        path = Path(base_model).expanduser()
        kind: SourceKind = "file" if path.is_file() or base_model.endswith(SINGLE_FILE_SUFFIXES) else "folder"
        return ModelSource(base_model, kind, path)
    if HUB_ID.match(base_model):
        return ModelSource(base_model, "hub")
    return ModelSource(base_model, "invalid")


def cached_hub_snapshot(hub_id: str, cache_dir: str | Path) -> Path | None:
    """The snapshot folder of ``hub_id`` in ``cache_dir`` (the hub cache layout that
    ``DiffusionPipeline.download(cache_dir=...)`` and ``hf download --cache-dir`` write), if it has a
    model_index.json; None otherwise."""
    repo = Path(cache_dir).expanduser() / ("models--" + hub_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        main = snapshots / ref.read_text().strip()
        if (main / "model_index.json").is_file():
            return main
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir()):
            if (snap / "model_index.json").is_file():
                return snap
    return None


def download_command(hub_id: str, cache_dir: str | Path) -> str:
    """The command that puts ``hub_id`` where the agent reads it."""
    return f"hf download {hub_id} --cache-dir {cache_dir}"


def is_sdxl(base_model: str, cache_dir: str | Path) -> bool | None:
    """Whether ``base_model`` is an SDXL pipeline, from its model_index.json where it is on this machine, else
    from its name; None for the tiny test models and settings that name nothing."""
    source = resolve_model_source(base_model)
    if source.kind in ("tiny", "invalid"):
        return None
    folder = source.path if source.kind == "folder" else None
    if source.kind == "hub":
        folder = cached_hub_snapshot(base_model, cache_dir)
    index = folder / "model_index.json" if folder is not None else None
    if index is not None and index.is_file():
        try:
            return "XL" in str(json.loads(index.read_text()).get("_class_name", ""))
        except (OSError, ValueError):
            pass
    return "xl" in base_model.lower()


def size_mismatch(
    base_model: str, cache_dir: str | Path, train_resolution: int | None, render_size: int
) -> str | None:
    """A warning when the sizes do not suit the model: SDXL learned 1024 px pictures and draws broken ones at
    512; SD 1.x/2.x learned 512/768 and repeats itself (two heads, tiled bodies) at 1024. ``train_resolution``
    None is the recipe's own for the model's family, which suits it."""
    sdxl = is_sdxl(base_model, cache_dir)
    if sdxl is None:
        return None
    sizes = [render_size] if train_resolution is None else [train_resolution, render_size]
    if sdxl and min(sizes) < 1024:
        return (
            f"{base_model} is an SDXL model but TRAIN_RESOLUTION={train_resolution} and "
            f"RENDER_SIZE={render_size}: SDXL needs 1024"
        )
    if not sdxl and max(sizes) > 768:
        return (
            f"{base_model} is an SD 1.x/2.x model but TRAIN_RESOLUTION={train_resolution} and "
            f"RENDER_SIZE={render_size}: it works at 512 (768 for SD 2.x)"
        )
    return None
