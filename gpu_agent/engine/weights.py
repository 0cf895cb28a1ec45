"""Loading a pipeline's UNet in a narrower dtype than its files hold, without ever holding the wide copy.

diffusers reads a safetensors file through one memory map and casts tensor by tensor; every page it reads stays
mapped until the whole file is done, so loading SD-1.5's 3.4 GB fp32 UNet as bf16 peaks at 3.4 + 1.7 GB (5.1 GB
for one model, and 15 GB for SDXL's). Opening the file afresh for each slice of ~256 MB of tensors bounds that:
each slice's map is released before the next one is read, and the peak is the narrow model plus one slice.
The UNet is most of a Stable Diffusion pipeline's weights; the VAE and text encoders load the ordinary way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

SLICE_BYTES = 256 * 1024**2
WEIGHTS = "diffusion_pytorch_model.safetensors"
SHARD_INDEX = f"{WEIGHTS}.index.json"


def weight_files(component: Path) -> list[Path] | None:
    """The safetensors files of a diffusers component folder (one file, or the shards its index names);
    None when it has none (e.g. only a pickled .bin), which diffusers' own loader then handles."""
    if (component / SHARD_INDEX).is_file():
        index = json.loads((component / SHARD_INDEX).read_text())
        return [component / name for name in sorted(set(index["weight_map"].values()))]
    if (component / WEIGHTS).is_file():
        return [component / WEIGHTS]
    return None


def load_unet(folder: Path, dtype: torch.dtype) -> Any | None:
    """The pipeline folder's UNet with its weights in ``dtype``, read one slice at a time; None when the
    folder's UNet is not a diffusers UNet stored as safetensors (the caller then lets diffusers load it)."""
    import diffusers
    from accelerate import init_empty_weights

    component = folder / "unet"
    files = weight_files(component)
    index = json.loads((folder / "model_index.json").read_text())
    library, class_name = (index.get("unet") or (None, None))[:2]
    if files is None or library != "diffusers" or class_name is None or not hasattr(diffusers, class_name):
        return None
    if not _narrows(files[0], dtype):
        return None  # nothing to save: diffusers' own loader maps the file without copying it
    model_class = getattr(diffusers, class_name)
    with init_empty_weights():
        # Parameters on the meta device: no memory until each is assigned its real tensor below.
        unet = model_class.from_config(model_class.load_config(component))
    expected = set(unet.state_dict())
    loaded: set[str] = set()
    for part in _slices(files, dtype):
        unexpected = set(part) - expected
        if unexpected:
            raise ValueError(f"unet weights have keys this {class_name} lacks, e.g. {min(unexpected)}")
        unet.load_state_dict(part, strict=False, assign=True)
        loaded |= set(part)
    missing = expected - loaded
    if missing:
        raise ValueError(f"unet weights lack {len(missing)} tensors, e.g. {min(missing)}")
    unet.register_to_config(_name_or_path=str(component))
    return unet.eval()


def _slices(files: list[Path], dtype: torch.dtype) -> Iterator[dict[str, torch.Tensor]]:
    from safetensors import safe_open

    for file in files:
        with safe_open(file, "pt") as handle:
            sizes = {key: _nbytes(handle, key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        batch: list[str] = []
        total = 0
        for key, size in sizes.items():
            batch.append(key)
            total += size
            if total >= SLICE_BYTES:
                yield _read(file, batch, dtype)
                batch, total = [], 0
        if batch:
            yield _read(file, batch, dtype)


def _read(file: Path, keys: list[str], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(file, "pt") as handle:
        # clone() when no cast happens, so no tensor keeps this slice's map alive after the handle closes.
        return {
            key: tensor.to(dtype) if tensor.dtype != dtype else tensor.clone()
            for key in keys
            for tensor in [handle.get_tensor(key)]
        }


def _narrows(file: Path, dtype: torch.dtype) -> bool:
    from safetensors import safe_open

    with safe_open(file, "pt") as handle:
        stored = [handle.get_slice(key).get_dtype() for key in handle.keys()]  # noqa: SIM118
    return max((_DTYPE_BYTES.get(name, 4) for name in stored), default=0) > dtype.itemsize


def _nbytes(handle: Any, key: str) -> int:
    part = handle.get_slice(key)
    count = 1
    for n in part.get_shape():
        count *= n
    return count * _DTYPE_BYTES.get(part.get_dtype(), 4)


_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
