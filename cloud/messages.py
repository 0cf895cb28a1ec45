"""Versioned message schemas carried by the queues (JSON, field ``v``).

A body that does not parse, or carries an unknown version, raises MessageError; consumers
dead-letter such a message with the reason and go on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from storage import keys
from storage.contracts import ID_PATTERN, EventKind, JobKind

Id = Annotated[str, StringConstraints(pattern=f"^{ID_PATTERN}$")]
BlobKey = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def new_id() -> str:
    return uuid.uuid4().hex


class MessageError(ValueError):
    """A malformed body or an unknown version."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainParams(_Message):
    """How to train: every knob of the trainer's TrainConfig but what the job names (base model, token, class)
    and what the agent decides (checkpoint period, memory saving); the agent maps it 1:1 (extra fields are
    refused there). Its defaults ARE the photoreal recipe for SD 1.x (cloud/recipes.py derives SDXL's from them;
    the trainer takes its defaults from here) — the one source of docs/TRAINING.md's table."""

    steps: int = Field(800, ge=1, le=20_000)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    rank: int = Field(16, ge=1, le=256)
    resolution: int = Field(512, ge=32, le=2048)
    batch_size: int = Field(1, ge=1, le=64)
    seed: int = 0
    prior_preservation: bool = True
    train_text_encoder: bool = True
    instance_prompt: str = Field("a photo of {token} {class_word}", max_length=300)
    class_prompt: str = Field("a photo of {class_word}", max_length=300)
    text_encoder_learning_rate: float = Field(5e-6, gt=0, le=1)
    lr_schedule: Literal["constant", "constant_with_warmup", "cosine", "linear"] = "constant"
    lr_warmup_steps: int = Field(0, ge=0)
    alpha: int | None = Field(None, ge=1, le=512)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    unet_target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    text_encoder_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    num_class_images: int = Field(100, ge=1, le=2000)
    prior_loss_weight: float = Field(1.0, ge=0, le=10)
    class_image_steps: int = Field(25, ge=1, le=150)
    snr_gamma: float | None = Field(5.0, gt=0)
    noise_offset: float = Field(0.0, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    adam_weight_decay: float = Field(1e-2, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    use_8bit_adam: bool = True
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"


class RenderSpec(_Message):
    """A render to make as soon as training ends (the order's first pictures)."""

    prompt: str = Field(min_length=1, max_length=1000)
    negative_prompt: str = Field("", max_length=1000)
    count: int = Field(1, ge=1, le=4)
    seed: int = 0


class TrainJob(_Message):
    v: Literal[1] = 1
    job_id: Id
    order_id: Id
    user_id: Id
    model_id: Id
    photo_keys: list[BlobKey] = Field(min_length=1, max_length=50)
    subject_token: str = Field(min_length=1, max_length=32)
    class_word: str = Field(min_length=1, max_length=32)
    base_model: str = Field(min_length=1, max_length=512)
    params: TrainParams = TrainParams()
    renders: list[RenderSpec] = Field(default_factory=list, max_length=8)
    attempt: int = Field(1, ge=1)
    held_out_photo: int | None = Field(
        None,
        ge=0,
        lt=50,
        description="Index in photo_keys of the photo kept out of training: the likeness "
        "reference a render is compared with. None: every photo is trained on.",
    )

    issued_at: float | None = Field(
        None,
        ge=0,
        description="When the bot placed the order (epoch s): a member "
        "forgotten later has this job dropped, one who came back after does not.",
    )

    @model_validator(mode="after")
    def _held_out_is_a_photo(self) -> TrainJob:
        if self.held_out_photo is not None and self.held_out_photo >= len(self.photo_keys):
            raise ValueError(
                f"held_out_photo {self.held_out_photo} is not one of the {len(self.photo_keys)} photos"
            )
        return self


RenderMode = Literal["txt2img", "variation", "upscale", "group", "edit", "backdrop"]

BackdropStyle = Literal["white", "grey", "black", "blur"]
"""mode 'backdrop': the person kept, the background replaced by a studio colour or blurred (agent-side)."""

EDIT_TEXT_GUIDANCE = 7.5
"""Mode "edit": how strongly the instruction is followed when the member names no text guidance."""
EDIT_IMAGE_GUIDANCE = 1.5
"""Mode "edit": how closely the result keeps to the picture when the member names no image guidance."""

LayoutId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class GroupMember(_Message):
    """One person of a group picture: whose model draws their region, with which identifier."""

    user_id: Id
    model_id: Id
    model_key: BlobKey
    subject: str = Field(
        min_length=1, max_length=64, description="Their '{token} {class_word}', e.g. 'ohwx man'."
    )


class RenderJob(_Message):
    v: Literal[1] = 1
    job_id: Id
    order_id: Id
    user_id: Id
    model_id: Id | None = Field(
        None,
        description="The model whose LoRA (model_keys[0]) draws the subject; None: "
        "the base model alone, or a job queued before render jobs named their model.",
    )
    model_keys: list[BlobKey] = Field(default_factory=list, max_length=4)
    subject: str = Field("", max_length=64, description="Text for {subject} in the prompt, e.g. 'sks man'.")
    base_model: str = Field(min_length=1, max_length=512)
    prompt: str = Field(min_length=1, max_length=1000)
    negative_prompt: str = Field("", max_length=1000)
    seed: int = 0
    count: int = Field(1, ge=1, le=4)
    width: int = Field(512, ge=32, le=2048, multiple_of=8)
    height: int = Field(512, ge=32, le=2048, multiple_of=8)
    steps: int = Field(30, ge=1, le=150)
    guidance: float = Field(7.0, ge=0, le=30)
    mode: RenderMode = "txt2img"
    source_key: BlobKey | None = None
    strength: float | None = Field(
        None, gt=0, le=1, description="img2img strength; None: the mode's default."
    )
    attempt: int = Field(1, ge=1)
    face_detail: bool = Field(False, description="Redraw small faces at full resolution after the render.")
    issued_at: float | None = Field(
        None,
        ge=0,
        description="When the bot placed the order (epoch s): a member "
        "forgotten later has this job dropped, one who came back after does not.",
    )
    members: list[GroupMember] = Field(
        default_factory=list,
        max_length=4,
        description="mode 'group': the 2-4 people pictured, left to right "
        "(each region is re-drawn with only that member's LoRA); empty for every other mode.",
    )
    layout: LayoutId | None = Field(
        None,
        description="mode 'group': the preset pose layout (engine data, one "
        "pose map per person count); None: the engine's default layout.",
    )
    image_guidance: float | None = Field(
        None,
        ge=1,
        le=10,
        description="mode 'edit': how closely the result keeps to the source picture "
        "(guidance is the instruction's); None: EDIT_IMAGE_GUIDANCE.",
    )
    edit_lora: bool = Field(
        True,
        description="mode 'edit': the model's LoRA is active during the edit (the face stays "
        "the member's); False: the model only scores the likeness of the result.",
    )
    backdrop: BackdropStyle | None = Field(
        None, description="mode 'backdrop': the new background of source_key's picture; None for other modes."
    )

    @model_validator(mode="after")
    def _group_has_members(self) -> RenderJob:
        if self.mode == "group":
            if not 2 <= len(self.members) <= 4:
                raise ValueError(f"a group picture has 2-4 members, not {len(self.members)}")
            if len({m.user_id for m in self.members}) != len(self.members):
                raise ValueError("a member appears twice in the group")
        elif self.members or self.layout is not None:
            raise ValueError(f"members and layout are for group pictures, not mode {self.mode!r}")
        return self

    @model_validator(mode="after")
    def _edit_has_source(self) -> RenderJob:
        if self.mode == "edit" and not self.source_key:
            raise ValueError("an edit needs the picture it changes (source_key)")
        if self.mode != "edit" and self.image_guidance is not None:
            raise ValueError(f"image_guidance is for edits, not mode {self.mode!r}")
        return self

    @model_validator(mode="after")
    def _backdrop_has_a_style(self) -> RenderJob:
        if (self.mode == "backdrop") != (self.backdrop is not None):
            raise ValueError("mode 'backdrop' and a backdrop style go together")
        if self.mode == "backdrop" and self.source_key is None:
            raise ValueError("a backdrop needs the picture it starts from (source_key)")
        return self


class Progress(_Message):
    step: int = Field(ge=0)
    total: int = Field(ge=0)
    eta_s: float | None = Field(None, ge=0)
    loss: float | None = None
    preview_key: BlobKey | None = None


class ErrorInfo(_Message):
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(min_length=1, max_length=500, description="Safe to show to the member.")


LikenessVerdict = Literal["strong", "fair", "weak", "copy", "no_face"]


class LikenessScore(_Message):
    """How much one delivered picture looks like the member (gpu_agent.photos.likeness)."""

    verdict: LikenessVerdict
    score: float | None = Field(
        None, ge=0, le=1, description="1 - face distance to the member; None: no face."
    )
    tries: int = Field(1, ge=1, le=10, description="Renders made for this picture (1 + automatic re-rolls).")
    seed: int | None = Field(
        None,
        ge=0,
        description="The seed an automatic re-roll made this picture from; None: the job's own "
        "(its seed + the picture's index).",
    )


class ImageSafety(_Message):
    """The safety check of one picture an agent stored (gpu_agent/agent/safety.py).

    The bot posts no picture without one (bot/services/safety.py)."""

    key: BlobKey
    flagged: bool
    score: float = Field(0.0, ge=0, le=1, description="Highest score among the blocked labels detected.")
    labels: list[str] = Field(default_factory=list, max_length=32)
    withheld: bool = Field(False, description="The engine blanked it (the base model's safety checker).")
    checker: str = Field("", max_length=64)


class AugmentedSet(_Message):
    """A few-shot training set the agent augmented (gpu_agent/agent/fewshot.py): what the member is told."""

    photos: int = Field(ge=1, le=50, description="The member's photos trained on.")
    images: int = Field(
        ge=1, le=1000, description="Pictures trained on: the photos and those made from them."
    )


class Event(_Message):
    v: Literal[1] = 1
    event_id: Id = Field(default_factory=new_id)
    job_id: Id
    order_id: Id
    job_kind: JobKind
    kind: EventKind
    progress: Progress | None = None
    output_keys: list[BlobKey] = Field(default_factory=list, description="Every file the job stored.")
    model_key: BlobKey | None = Field(None, description="A training's LoRA (among output_keys).")
    render_keys: list[BlobKey] = Field(
        default_factory=list,
        max_length=8,
        description="The pictures to deliver, in order (among output_keys).",
    )
    error: ErrorInfo | None = None
    agent_id: str = Field("", max_length=128)
    gpu_seconds: float | None = Field(None, ge=0, description="Accelerator time the job used (done/failed).")
    instance_type: str | None = Field(
        None, max_length=64, description="EC2 instance type, for cost per order."
    )
    likeness: list[LikenessScore] | None = Field(
        None,
        max_length=8,
        description="One per picture of render_keys, in order; "
        "done events of scored renders and of trainings' first pictures.",
    )
    safety: list[ImageSafety] = Field(default_factory=list, description="One per picture in output_keys.")
    augmented: AugmentedSet | None = Field(
        None, description="A training's done event: its small photo set was augmented (None: trained as is)."
    )
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @model_validator(mode="before")
    @classmethod
    def _typed_outputs(cls, data: object) -> object:
        """An event from an agent older than the typed outputs names its files in output_keys only: they are
        sorted into model_key and render_keys here, once, by the key layout (storage/keys.py)."""
        if isinstance(data, dict) and "model_key" not in data and "render_keys" not in data:
            outputs = [k for k in data.get("output_keys") or () if isinstance(k, str)]
            data = {
                **data,
                "model_key": next((k for k in outputs if keys.is_model_key(k)), None),
                "render_keys": [k for k in outputs if keys.is_render_key(k)],
            }
        return data


M = TypeVar("M", bound=_Message)


def encode(message: _Message) -> str:
    return message.model_dump_json()


def decode(body: str | bytes, model: type[M]) -> M:
    """Parse a body as ``model``; raise MessageError naming what is wrong (never anything else)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["loc"] and first["loc"][0] == "v":
            raise MessageError(f"unknown {model.__name__} version: {first['msg']}") from None
        raise MessageError(f"malformed {model.__name__}: {where}: {first['msg']}") from None
    except Exception as err:
        raise MessageError(f"malformed {model.__name__}: {err}") from None
