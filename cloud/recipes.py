"""The photoreal training recipe per base-model family, and the one place settings override it.

settings → the TrainJob (the bot calls ``train_params`` when it places a /train order) → the trainer (the agent
maps ``TrainJob.params`` 1:1 onto ``TrainConfig``). The SD 1.x recipe is ``TrainParams()`` itself (its defaults);
SDXL's is the SD 1.x one with what differs. Torch-free, so the bot reads it too. docs/TRAINING.md documents every
value and where it comes from; tests/cloud/test_recipes.py keeps that table and an agent's TrainConfig equal.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from cloud.messages import TrainJob, TrainParams
from storage.settings import Settings

BaseFamily = Literal["sd1", "sdxl"]

PHOTOREAL: dict[BaseFamily, TrainParams] = {
    "sd1": TrainParams(),
    "sdxl": TrainParams(resolution=1024, steps=1000),
}

# setting → the TrainParams field it overrides when set (None: the recipe's value)
SETTING_OVERRIDES: dict[str, str] = {
    "train_steps": "steps",
    "train_resolution": "resolution",
    "train_rank": "rank",
    "train_learning_rate": "learning_rate",
    "train_prior_preservation": "prior_preservation",
    "train_text_encoder": "train_text_encoder",
    "train_class_images": "num_class_images",
}

_XL_NAME = re.compile(r"xl", re.IGNORECASE)


def base_family(base_model: str) -> BaseFamily:
    """SDXL or SD 1.x (SD 2.x trains with the SD 1.x recipe), without loading the model: a local diffusers
    folder's model_index.json names its pipeline class; otherwise the name tells (tiny-sdxl, …-xl-…)."""
    index = Path(base_model) / "model_index.json"
    try:
        pipeline = str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
        return "sdxl" if "XL" in pipeline else "sd1"
    except (OSError, ValueError, AttributeError):
        pass
    return "sdxl" if _XL_NAME.search(base_model) else "sd1"


def train_params(settings: Settings, base_model: str | None = None) -> TrainParams:
    """The recipe of ``base_model``'s family (default: the deployment's base model), with the train_* settings
    that are set laid over it; validated as a whole, so a bad combination fails here, not on a GPU."""
    recipe = PHOTOREAL[base_family(base_model or settings.base_model)]
    overrides = {
        field: value
        for setting, field in SETTING_OVERRIDES.items()
        if (value := getattr(settings, setting)) is not None
    }
    return TrainParams.model_validate({**recipe.model_dump(), **overrides})


def class_images_digest(job: TrainJob) -> str:
    """What makes a set of class images: the base model, the class prompt and word, their size, steps and seed
    (image i is rendered from seed + i, so a longer set extends a shorter one and the count is not part of it)."""
    p = job.params
    parts = [job.base_model, p.class_prompt, job.class_word, p.resolution, p.class_image_steps, p.seed]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
