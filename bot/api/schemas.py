"""Request and response bodies of the HTTP API: the OpenAPI document's schemas are these models' JSON
schemas (bot/api/openapi.py), so the document and the code cannot drift apart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from storage.contracts import ID_PATTERN
from storage.webhooks import EVENTS

MAX_SEED = 2**31 - 1
CLASS_WORDS = ("man", "woman", "person")  # as /train (bot/cogs/train.py)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable reason, e.g. `not_found`, `rate_limited`.")
    message: str = Field(description="What went wrong and what to do, for a person.")


class PhotoLine(BaseModel):
    label: str = Field(description="Which upload: its position and file name.")
    ok: bool
    reason: str = Field(description="Why the photo was refused; empty when it was accepted.")


class ErrorResponse(BaseModel):
    error: ErrorDetail
    photos: list[PhotoLine] | None = Field(None, description="POST /v1/models: the per-photo report.")


class ModelCreated(BaseModel):
    order_id: str
    model_id: str
    subject_id: str = Field(description="The person the model is of; reuse it to train them again.")
    status: str
    summary: str
    photos: list[PhotoLine]


class RenderRequest(_Body):
    model_id: str = Field(pattern=f"^{ID_PATTERN}$", description="A ready model of one of your subjects.")
    prompt: str = Field(
        min_length=1, max_length=900, description="What to picture; `{subject}` stands for the person."
    )
    negative_prompt: str = Field("", max_length=500)
    count: int = Field(1, ge=1, le=4)
    width: int = Field(512, ge=256, le=1024, multiple_of=8)
    height: int = Field(512, ge=256, le=1024, multiple_of=8)
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Default: a random seed.")
    guidance: float = Field(7.0, ge=1.0, le=20.0)


class OrderCreated(BaseModel):
    order_id: str
    status: str


class Progress(BaseModel):
    step: int | None
    total: int | None
    eta_s: float | None


class ResultLink(BaseModel):
    url: str = Field(description="A signed link to the picture; it stops working at `expires_at`.")
    expires_at: int


class OrderOut(BaseModel):
    id: str
    kind: Literal["train", "render"]
    status: str
    subject_id: str
    model_id: str | None
    progress: Progress | None
    error: ErrorDetail | None
    results: list[ResultLink]
    created_at: float
    updated_at: float


class Deleted(BaseModel):
    id: str
    deleted: bool


class Forgotten(BaseModel):
    subject_id: str
    forgotten: dict[str, int] = Field(description="What was deleted: orders, models, pictures, records.")


class WebhookCreate(_Body):
    url: str = Field(
        min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$", description="Where events are POSTed."
    )
    events: list[Literal[EVENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(EVENTS), min_length=1, description="The events to send."
    )


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at: float


class WebhookCreated(Webhook):
    secret: str = Field(description="The signing secret: shown once, keep it (docs/API.md, verifying).")


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class Attempt(BaseModel):
    at: float
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    order_id: str | None
    event: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[Attempt]
    created_at: float
    delivered_at: float | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
