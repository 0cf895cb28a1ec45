"""The engine and `photogen doctor` resolve BASE_MODEL by one rule, and give the same download command."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpu_agent.engine.model_source import download_command, resolve_model_source
from gpu_agent.engine.models import BaseModelError, load_base_pipeline
from photogen.doctor import check_base_model
from storage.settings import load_settings


def test_a_hub_id_missing_offline_gets_the_doctors_download_command(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "models"
    with pytest.raises(BaseModelError) as err:
        load_base_pipeline("acme/not-here", device="cpu", dtype=torch.float32, cache_dir=cache)
    command = download_command("acme/not-here", cache)
    assert command in str(err.value)
    doctor = check_base_model(
        load_settings(base_model="acme/not-here", model_cache_dir=str(cache)), offline=True
    )
    assert command in doctor.fix


def test_a_relative_folder_is_a_path_for_both(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)  # no model_index.json
    assert resolve_model_source("models/mine").kind == "folder"
    with pytest.raises(BaseModelError, match="not a diffusers pipeline folder"):
        load_base_pipeline("models/mine", device="cpu", dtype=torch.float32)
    doctor = check_base_model(load_settings(base_model="models/mine"), offline=True)
    assert not doctor.ok and "no model_index.json" in doctor.detail
