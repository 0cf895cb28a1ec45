"""Resumable training checkpoints, written atomically.

A checkpoint is a folder ``step-00000400/`` holding the trainable LoRA weights (safetensors), the optimizer
and LR-scheduler state (``torch.load(weights_only=True)``-safe: no pickled code), the RNG states of torch,
numpy and Python as JSON/safetensors, and ``state.json`` (step, config fingerprint, photo hashes). The file
``LATEST`` names the newest complete folder; it is replaced atomically after the folder is complete, so a
machine killed mid-write leaves the previous checkpoint in force.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

LATEST = "LATEST"
FORMAT = "photogen-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used for this run (other config or photos, or damaged)."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    folder: Path


def save_checkpoint(
    checkpoint_dir: Path,
    *,
    step: int,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    grad_scaler: Any | None,
    fingerprint: str,
    photo_hashes: list[str],
) -> Checkpoint:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    try:
        current = latest_checkpoint(checkpoint_dir)
    except CheckpointError:
        current = None  # a damaged pointer is replaced below
    if current is not None and current.step == step:
        return current  # nothing trained since; the folder on disk already is this state
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=checkpoint_dir))
    try:
        save_file(
            {k: p.detach().to("cpu").contiguous().clone() for k, p in params.items()},
            tmp / "lora.safetensors",
        )
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), tmp / "lr_scheduler.pt")
        if grad_scaler is not None:
            torch.save(grad_scaler.state_dict(), tmp / "grad_scaler.pt")
        _save_rng(tmp)
        state = {"format": FORMAT, "step": step, "fingerprint": fingerprint, "photo_hashes": photo_hashes}
        (tmp / "state.json").write_text(json.dumps(state, indent=2))
        final = checkpoint_dir / name
        if final.exists():  # a leftover that LATEST does not name, so nothing depends on it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomically(checkpoint_dir / LATEST, name)
    for old in checkpoint_dir.glob("step-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(step=step, folder=final)


def latest_checkpoint(checkpoint_dir: Path | None) -> Checkpoint | None:
    if checkpoint_dir is None or not (checkpoint_dir / LATEST).is_file():
        return None
    name = (checkpoint_dir / LATEST).read_text().strip()
    folder = checkpoint_dir / name
    if not name.startswith("step-") or "/" in name or not (folder / "state.json").is_file():
        raise CheckpointError(
            f"checkpoint folder {checkpoint_dir} names a missing or odd checkpoint {name!r}"
        )
    state = json.loads((folder / "state.json").read_text())
    return Checkpoint(step=int(state["step"]), folder=folder)


def load_checkpoint(
    checkpoint: Checkpoint,
    *,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    grad_scaler: Any | None,
    fingerprint: str,
    photo_hashes: list[str],
) -> int:
    """Restore everything saved at ``checkpoint`` into the given objects; return the step to go on from."""
    folder = checkpoint.folder
    state = json.loads((folder / "state.json").read_text())
    if state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {folder} has unknown format {state.get('format')!r}")
    if state["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {folder} was written by a run with other settings; refusing to resume"
        )
    if state["photo_hashes"] != photo_hashes:
        raise CheckpointError(f"checkpoint {folder} was written for other photos; refusing to resume")
    weights = load_file(folder / "lora.safetensors")
    if set(weights) != set(params):
        raise CheckpointError(f"checkpoint {folder} holds other LoRA weights than this run trains")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(weights[key].to(device=param.device, dtype=param.dtype))
    device = next(iter(params.values())).device
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
    lr_scheduler.load_state_dict(torch.load(folder / "lr_scheduler.pt", weights_only=True))
    if grad_scaler is not None and (folder / "grad_scaler.pt").is_file():
        grad_scaler.load_state_dict(torch.load(folder / "grad_scaler.pt", weights_only=True))
    _load_rng(folder)
    return int(state["step"])


def _save_rng(folder: Path) -> None:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    save_file(tensors, folder / "rng.safetensors")
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    (folder / "rng.json").write_text(
        json.dumps(
            {
                "numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
                "python": [version, list(internal), gauss_next],
            }
        )
    )


def _load_rng(folder: Path) -> None:
    tensors = load_file(folder / "rng.safetensors")
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    saved = json.loads((folder / "rng.json").read_text())
    kind, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = saved["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
