"""Loading a UNet stored wider than the run's dtype, slice by slice (gpu_agent/engine/weights.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpu_agent.engine import weights
from gpu_agent.engine.models import BaseModelError, load_base_pipeline
from gpu_agent.engine.tiny import build_tiny_pipeline


@pytest.fixture(scope="module")
def saved_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fp32-model") / "model"
    build_tiny_pipeline("tiny-sd", seed=5).save_pretrained(folder)
    return folder


def test_bf16_load_reads_slices_and_equals_a_plain_cast(
    saved_fp32: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = load_file(saved_fp32 / "unet" / weights.WEIGHTS)
    # Slices of ~64 KB: the tiny UNet then arrives in many pieces, as a 3.4 GB one does in 256 MB ones.
    monkeypatch.setattr(weights, "SLICE_BYTES", 64 * 1024)
    slices = list(weights._slices([saved_fp32 / "unet" / weights.WEIGHTS], torch.bfloat16))
    assert len(slices) > 5 and sum(map(len, slices)) == len(stored)

    pipe = load_base_pipeline(str(saved_fp32), device="cpu", dtype=torch.bfloat16)
    state = pipe.unet.state_dict()
    assert state.keys() == stored.keys()
    assert all(torch.equal(state[k], stored[k].to(torch.bfloat16)) for k in stored)
    assert not any(p.is_meta for p in pipe.unet.parameters())
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.bfloat16
    assert not pipe.unet.training


def test_same_dtype_load_is_left_to_diffusers(saved_fp32: Path) -> None:
    assert weights.load_unet(saved_fp32, torch.float32) is None  # nothing to narrow: mapped, not copied
    pipe = load_base_pipeline(str(saved_fp32), device="cpu", dtype=torch.float32)
    stored = load_file(saved_fp32 / "unet" / weights.WEIGHTS)
    assert all(torch.equal(pipe.unet.state_dict()[k], v) for k, v in stored.items())


def test_sharded_unet_loads_from_its_index(saved_fp32: Path, tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    build_tiny_pipeline("tiny-sd", seed=5).save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "unet" / weights.SHARD_INDEX).is_file()
    files = weights.weight_files(folder / "unet")
    assert files is not None and len(files) > 1
    unet = weights.load_unet(folder, torch.bfloat16)
    stored = load_file(saved_fp32 / "unet" / weights.WEIGHTS)
    assert all(torch.equal(unet.state_dict()[k], v.to(torch.bfloat16)) for k, v in stored.items())


@pytest.mark.parametrize("damage", ["drop", "extra"])
def test_a_unet_file_that_does_not_fit_its_config_fails_clearly(
    saved_fp32: Path, tmp_path: Path, damage: str
) -> None:
    folder = tmp_path / "damaged"
    build_tiny_pipeline("tiny-sd", seed=5).save_pretrained(folder)
    file = folder / "unet" / weights.WEIGHTS
    state = load_file(file)
    if damage == "drop":
        state.pop(min(state))
        message = "unet weights lack 1 tensors"
    else:
        state["not_a_layer.weight"] = torch.zeros(3)
        message = "keys this UNet2DConditionModel lacks, e.g. not_a_layer.weight"
    save_file(state, file)
    with pytest.raises(BaseModelError, match=message):
        load_base_pipeline(str(folder), device="cpu", dtype=torch.bfloat16)


def test_a_unet_stored_as_pickle_only_is_left_to_diffusers(saved_fp32: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bin-only"
    build_tiny_pipeline("tiny-sd", seed=5).save_pretrained(folder, safe_serialization=False)
    assert weights.weight_files(folder / "unet") is None
    assert weights.load_unet(folder, torch.bfloat16) is None
    pipe = load_base_pipeline(str(folder), device="cpu", dtype=torch.bfloat16)
    assert pipe.unet.dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_a_truncated_unet_file_is_a_base_model_error(tmp_path: Path, dtype: torch.dtype) -> None:
    # An interrupted download or copy: both the sliced load and diffusers' own must say which model failed.
    folder = tmp_path / "truncated"
    build_tiny_pipeline("tiny-sd", seed=5).save_pretrained(folder)
    file = folder / "unet" / weights.WEIGHTS
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(BaseModelError, match="could not be loaded from disk"):
        load_base_pipeline(str(folder), device="cpu", dtype=dtype)
