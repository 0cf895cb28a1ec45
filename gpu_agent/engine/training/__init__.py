"""DreamBooth LoRA training: ``train_lora(TrainConfig(...), photos, output_dir=...) -> LoraArtifact``."""

from gpu_agent.engine.training.artifact import LoraArtifact
from gpu_agent.engine.training.checkpoint import Checkpoint, CheckpointError
from gpu_agent.engine.training.config import TrainConfig
from gpu_agent.engine.training.trainer import (
    Progress,
    TrainingError,
    TrainingInputError,
    TrainingInterrupted,
    train_lora,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "LoraArtifact",
    "Progress",
    "TrainConfig",
    "TrainingError",
    "TrainingInputError",
    "TrainingInterrupted",
    "train_lora",
]
