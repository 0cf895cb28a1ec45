"""Versioned message schemas carried by the queues (JSON, field ``v``).

A body that does not parse, or carries an unknown version, raises MessageError; consumers
dead-letter such a message with the reason and go on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
BlobKey = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def new_id() -> str:
    return uuid.uuid4().hex


class MessageError(ValueError):
    """A malformed body or an unknown version."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainParams(_Message):
    steps: int = Field(800, ge=1, le=20_000)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    rank: int = Field(16, ge=1, le=256)
    resolution: int = Field(512, ge=32, le=2048)
    batch_size: int = Field(1, ge=1, le=64)
    seed: int = 0
    prior_preservation: bool = False
    train_text_encoder: bool = False


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
    issued_at: float | None = Field(None, ge=0, description="When the bot placed the order (epoch s): a member "
                                    "forgotten later has this job dropped, one who came back after does not.")


RenderMode = Literal["txt2img", "variation", "upscale", "group", "edit"]


class RenderJob(_Message):
    v: Literal[1] = 1
    job_id: Id
    order_id: Id
    user_id: Id
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
    strength: float | None = Field(None, gt=0, le=1, description="img2img strength; None: the mode's default.")
    attempt: int = Field(1, ge=1)
    issued_at: float | None = Field(None, ge=0, description="When the bot placed the order (epoch s): a member "
                                    "forgotten later has this job dropped, one who came back after does not.")


EventKind = Literal["started", "progress", "checkpoint", "done", "failed", "preempted"]


class Progress(_Message):
    step: int = Field(ge=0)
    total: int = Field(ge=0)
    eta_s: float | None = Field(None, ge=0)
    loss: float | None = None
    preview_key: BlobKey | None = None


class ErrorInfo(_Message):
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(min_length=1, max_length=500, description="Safe to show to the member.")


class Event(_Message):
    v: Literal[1] = 1
    event_id: Id = Field(default_factory=new_id)
    job_id: Id
    order_id: Id
    job_kind: Literal["train", "render"]
    kind: EventKind
    progress: Progress | None = None
    output_keys: list[BlobKey] = Field(default_factory=list)
    error: ErrorInfo | None = None
    agent_id: str = Field("", max_length=128)
    gpu_seconds: float | None = Field(None, ge=0, description="Accelerator time the job used (done/failed).")
    instance_type: str | None = Field(None, max_length=64, description="EC2 instance type, for cost per order.")
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


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
    except Exception as err:  # noqa: BLE001 - bytes that are not even text
        raise MessageError(f"malformed {model.__name__}: {err}") from None
