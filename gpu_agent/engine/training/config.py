"""TrainConfig: every knob of a DreamBooth LoRA training, with defaults for photorealistic faces.

The defaults are not written here: they are the SD 1.x photoreal recipe, ``cloud.messages.TrainParams``'s
defaults (the one source; cloud/recipes.py holds the SDXL one). Where each comes from is written down in
docs/TRAINING.md, and a test compares that table with what an agent runs for a /train order.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloud.messages import TrainParams

MixedPrecision = Literal["auto", "no", "fp16", "bf16"]
Toggle = Literal["auto", "on", "off"]
LrSchedule = Literal["constant", "constant_with_warmup", "cosine", "linear"]

_TOKEN = re.compile(r"^[a-z][a-z0-9]{1,19}$")
_CLASS_WORD = re.compile(r"^[a-z][a-z -]{0,38}[a-z]$")
_R = TrainParams()  # the SD 1.x photoreal recipe
# How a run goes about it, not what it computes: a checkpoint resumes across them.
RUNTIME_FIELDS = {"checkpoint_every", "eval_losses", "loss_every", "compile_unet", "channels_last"}


class TrainConfig(BaseModel):
    """What to train and how. Immutable; build a new one with ``model_copy(update=...)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_model: str = Field(description="tiny-sd / tiny-sdxl, a local diffusers folder or a hub id.")
    token: str = Field("sks", description="Rare word that comes to mean the member, e.g. 'sks'.")
    class_word: str = Field("person", description="What the member is: 'man', 'woman', 'person'.")
    instance_prompt: str = Field(_R.instance_prompt, description="Caption of every photo.")
    class_prompt: str = Field(_R.class_prompt, description="Caption of the prior-preservation images.")

    resolution: int = Field(_R.resolution, ge=32, le=2048, description="Square training crops, pixels.")
    steps: int = Field(_R.steps, ge=1, le=20000, description="Optimizer steps.")
    batch_size: int = Field(_R.batch_size, ge=1, le=64, description="Member photos per step.")
    learning_rate: float = Field(_R.learning_rate, gt=0, le=1e-2, description="UNet LoRA learning rate.")
    text_encoder_learning_rate: float = Field(
        _R.text_encoder_learning_rate, gt=0, le=1e-2, description="Text-encoder LoRA learning rate."
    )
    lr_schedule: LrSchedule = Field(_R.lr_schedule, description="Learning-rate schedule.")
    lr_warmup_steps: int = Field(_R.lr_warmup_steps, ge=0, description="Warm-up steps of the schedule.")
    rank: int = Field(_R.rank, ge=1, le=256, description="LoRA rank.")
    alpha: int | None = Field(_R.alpha, ge=1, le=512, description="LoRA alpha; None means equal to the rank.")
    lora_dropout: float = Field(_R.lora_dropout, ge=0, lt=1, description="Dropout inside the LoRA layers.")
    unet_target_modules: tuple[str, ...] = Field(
        _R.unet_target_modules, description="UNet attention projections that get a LoRA."
    )
    text_encoder_target_modules: tuple[str, ...] = Field(
        _R.text_encoder_target_modules, description="CLIP projections that get a LoRA."
    )

    train_text_encoder: bool = Field(
        _R.train_text_encoder, description="Also train LoRAs on the text encoder(s)."
    )
    prior_preservation: bool = Field(
        _R.prior_preservation, description="Regularise with class images of the base model."
    )
    num_class_images: int = Field(
        _R.num_class_images, ge=1, le=2000, description="Class images for prior preservation."
    )
    prior_loss_weight: float = Field(
        _R.prior_loss_weight, ge=0, le=10, description="Weight of the class-image loss."
    )
    class_image_steps: int = Field(
        _R.class_image_steps, ge=1, le=150, description="Denoising steps per class image."
    )

    snr_gamma: float | None = Field(
        _R.snr_gamma, gt=0, description="Min-SNR loss weighting gamma; None turns it off."
    )
    noise_offset: float = Field(
        _R.noise_offset, ge=0, le=1, description="Offset-noise strength; 0 turns it off."
    )
    max_grad_norm: float = Field(_R.max_grad_norm, gt=0, description="Gradient clipping norm.")
    adam_beta1: float = Field(_R.adam_beta1, gt=0, lt=1)
    adam_beta2: float = Field(_R.adam_beta2, gt=0, lt=1)
    adam_weight_decay: float = Field(_R.adam_weight_decay, ge=0, lt=1)
    adam_epsilon: float = Field(_R.adam_epsilon, gt=0)
    use_8bit_adam: bool = Field(
        _R.use_8bit_adam, description="bitsandbytes' 8-bit AdamW on CUDA when it is installed."
    )

    mixed_precision: MixedPrecision = Field(
        _R.mixed_precision,
        description="auto: bf16 (fp16 on older GPUs) on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), "
        "fp32 elsewhere. Frozen weights are held in this precision; LoRA weights stay fp32.",
    )
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    checkpoint_every: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    eval_losses: bool = Field(
        False,
        description="After the last step, measure the denoising loss of the photos with the LoRA off and on "
        "(meta.json's eval_loss_*): about a dozen steps' forward passes, so only when asked.",
    )
    loss_every: int = Field(
        10, ge=1, description="Read the loss back from the device every N steps (each read waits for it)."
    )
    compile_unet: Toggle = Field(
        "off",
        description="torch.compile the UNet with its LoRA layers; auto: on CUDA for runs of 300+ steps.",
    )
    channels_last: Toggle = Field("auto", description="Channels-last UNet layout; auto: on CUDA.")
    seed: int = Field(
        _R.seed, ge=0, le=2**63 - 1, description="Seeds LoRA init, data order, noise and timesteps."
    )

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
        """Hash of everything that shapes the result (all but RUNTIME_FIELDS): a checkpoint may be
        resumed only by a run with the same fingerprint and the same photos."""
        fields = self.model_dump(exclude=RUNTIME_FIELDS)
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
