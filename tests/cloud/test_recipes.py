"""The recipe's family is read without loading a model; settings lay over it; a bad one stops start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloud.recipes import PHOTOREAL, base_family, train_params
from storage.settings import SettingsError, load_settings


def test_the_family_comes_from_a_local_folders_pipeline_class_or_the_name(tmp_path: Path) -> None:
    folder = tmp_path / "my-base"  # no "xl" in the name: only model_index.json can tell
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    assert base_family(str(folder)) == "sdxl"
    assert train_params(load_settings(), str(folder)).resolution == 1024
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    assert base_family(str(folder)) == "sd1"
    assert base_family("stabilityai/stable-diffusion-xl-base-1.0") == "sdxl"
    assert base_family("runwayml/stable-diffusion-v1-5") == "sd1"
    assert PHOTOREAL["sdxl"].resolution != PHOTOREAL["sd1"].resolution


def test_a_training_resolution_the_trainer_would_refuse_stops_start_up() -> None:
    with pytest.raises(SettingsError, match=r"TRAIN_RESOLUTION.*multiple of 8"):
        load_settings(train_resolution=500)
