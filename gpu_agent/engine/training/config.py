"""TrainConfig: every knob of a DreamBooth LoRA training, with defaults for photorealistic faces.

Where each default comes from is written down in docs/TRAINING.md; keep the two in step.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MixedPrecision = Literal["auto", "no", "fp16", "bf16"]
LrSchedule = Literal["constant", "constant_with_warmup", "cosine", "linear"]

_TOKEN = re.compile(r"^[a-z][a-z0-9]{1,19}$")
_CLASS_WORD = re.compile(r"^[a-z][a-z -]{0,38}[a-z]$")


class TrainConfig(BaseModel):
    """What to train and how. Immutable; build a new one with ``model_copy(update=...)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_model: str = Field(description="tiny-sd / tiny-sdxl, a local diffusers folder or a hub id.")
    token: str = Field("sks", description="Rare word that comes to mean the member, e.g. 'sks'.")
    class_word: str = Field("person", description="What the member is: 'man', 'woman', 'person'.")
    instance_prompt: str = Field("a photo of {token} {class_word}", description="Caption of every photo.")
    class_prompt: str = Field(
        "a photo of {class_word}", description="Caption of the prior-preservation images."
    )

    resolution: int = Field(512, ge=32, le=2048, description="Square training crops, pixels.")
    steps: int = Field(800, ge=1, le=20000, description="Optimizer steps.")
    batch_size: int = Field(1, ge=1, le=64, description="Member photos per step.")
    learning_rate: float = Field(1e-4, gt=0, le=1e-2, description="UNet LoRA learning rate.")
    text_encoder_learning_rate: float = Field(
        5e-6, gt=0, le=1e-2, description="Text-encoder LoRA learning rate."
    )
    lr_schedule: LrSchedule = Field("constant", description="Learning-rate schedule.")
    lr_warmup_steps: int = Field(0, ge=0, description="Warm-up steps of the schedule.")
    rank: int = Field(16, ge=1, le=256, description="LoRA rank.")
    alpha: int | None = Field(None, ge=1, le=512, description="LoRA alpha; None means equal to the rank.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the LoRA layers.")
    unet_target_modules: tuple[str, ...] = Field(
        ("to_q", "to_k", "to_v", "to_out.0"), description="UNet attention projections that get a LoRA."
    )
    text_encoder_target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "out_proj"), description="CLIP projections that get a LoRA."
    )

    train_text_encoder: bool = Field(True, description="Also train LoRAs on the text encoder(s).")
    prior_preservation: bool = Field(True, description="Regularise with class images of the base model.")
    num_class_images: int = Field(100, ge=1, le=2000, description="Class images for prior preservation.")
    prior_loss_weight: float = Field(1.0, ge=0, le=10, description="Weight of the class-image loss.")
    class_image_steps: int = Field(25, ge=1, le=150, description="Denoising steps per class image.")

    snr_gamma: float | None = Field(5.0, gt=0, description="Min-SNR loss weighting gamma; None turns it off.")
    noise_offset: float = Field(0.0, ge=0, le=1, description="Offset-noise strength; 0 turns it off.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    adam_weight_decay: float = Field(1e-2, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    use_8bit_adam: bool = Field(True, description="bitsandbytes' 8-bit AdamW on CUDA when it is installed.")

    mixed_precision: MixedPrecision = Field(
        "auto",
        description="auto: bf16 (fp16 on older GPUs) on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), "
        "fp32 elsewhere. Frozen weights are held in this precision; LoRA weights stay fp32.",
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    checkpoint_every: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds LoRA init, data order, noise and timesteps.")

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"resolution must be a multiple of 8 pixels, got {value}")
        return value

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError("token must be one lowercase word of 2-20 letters/digits starting with a letter")
        return value

    @field_validator("class_word")
    @classmethod
    def _class_shape(cls, value: str) -> str:
        if not _CLASS_WORD.match(value):
            raise ValueError("class_word must be 2-40 lowercase letters, spaces or hyphens, e.g. 'man'")
        return value

    @field_validator("instance_prompt")
    @classmethod
    def _names_the_token(cls, value: str) -> str:
        if "{token}" not in value:
            raise ValueError("instance_prompt must contain {token}, or the LoRA has no word to answer to")
        return value

    @property
    def subject(self) -> str:
        """'sks man': what a render prompt's {subject} becomes."""
        return f"{self.token} {self.class_word}"

    def instance_text(self) -> str:
        return self.instance_prompt.format(token=self.token, class_word=self.class_word)

    def class_text(self) -> str:
        return self.class_prompt.format(token=self.token, class_word=self.class_word)

    def lora_alpha(self) -> int:
        return self.alpha or self.rank

    def fingerprint(self) -> str:
        """Hash of everything that shapes the result (all but ``checkpoint_every``): a checkpoint may be
        resumed only by a run with the same fingerprint and the same photos."""
        fields = self.model_dump(exclude={"checkpoint_every"})
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
