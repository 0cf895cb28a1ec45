"""The result of a training: LoRA weights diffusers' ``load_lora_weights`` accepts, plus meta.json."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHTS_NAME = "lora.safetensors"
META_NAME = "meta.json"
META_FORMAT = "photogen-lora/1"


@dataclass(frozen=True)
class LoraArtifact:
    """Where the trained LoRA is and what it is. ``meta`` is the content of meta.json."""

    weights_path: Path
    meta_path: Path
    meta: dict[str, Any] = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)
    """Seconds per phase of the run that wrote it (model_load, class_images, caching, steps, eval, save...)."""

    @property
    def steps(self) -> int:
        return int(self.meta["steps"])

    @property
    def is_test_model(self) -> bool:
        return bool(self.meta["is_test_model"])


def write_artifact(
    output_dir: Path,
    *,
    pipeline_class: Any,
    lora_layers: dict[str, dict[str, Any]],
    adapter_metadata: dict[str, dict[str, Any]],
    meta: dict[str, Any],
) -> LoraArtifact:
    """Write weights, then meta.json, each by atomic rename: meta.json present means the weights are complete.

    ``lora_layers`` maps save_lora_weights' argument names ("unet", "text_encoder", "text_encoder_2") to the
    diffusers-format state dicts.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    weights_path, meta_path = output_dir / WEIGHTS_NAME, output_dir / META_NAME
    # A stale meta.json beside new weights would vouch for them before they are complete.
    meta_path.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lora-", dir=output_dir))
    try:
        kwargs = {f"{name}_lora_layers": layers for name, layers in lora_layers.items()}
        kwargs.update({f"{name}_lora_adapter_metadata": md for name, md in adapter_metadata.items()})
        pipeline_class.save_lora_weights(
            str(tmp), weight_name=WEIGHTS_NAME, safe_serialization=True, **kwargs
        )
        (tmp / WEIGHTS_NAME).chmod(
            0o644
        )  # written inside a private temp folder; the file itself is not secret
        os.replace(tmp / WEIGHTS_NAME, weights_path)
        (tmp / META_NAME).write_text(json.dumps({"format": META_FORMAT, **meta}, indent=2, sort_keys=True))
        os.replace(tmp / META_NAME, meta_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return LoraArtifact(
        weights_path=weights_path, meta_path=meta_path, meta=json.loads(meta_path.read_text())
    )
