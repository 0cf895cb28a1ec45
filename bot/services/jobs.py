"""The queue messages an order sends, and sending them, for both front doors (the Discord commands in
bot/services/member_orders.py and the HTTP API in bot/api): one recipe, one enqueue rule. No discord here."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.backends import Backends
from bot.services.records import Placed
from cloud.messages import BackdropStyle, RenderJob, RenderSpec, TrainJob
from cloud.recipes import train_params
from storage import lifecycle
from storage.lifecycle import ModelView
from storage.settings import Settings

TRAIN_PREVIEW = RenderSpec(prompt="professional headshot photo of {subject}, studio lighting", count=1)


def train_job(
    s: Settings,
    *,
    job_id: str,
    order_id: str,
    user_id: object,
    model_id: str,
    photo_keys: list[str],
    token: str,
    class_word: str,
) -> TrainJob:
    """The TrainJob of a training on these stored photo crops: the photoreal recipe of the base's family,
    settings laid over; with 3 photos or more the last is held out as the likeness reference."""
    return TrainJob(
        job_id=job_id,
        order_id=order_id,
        user_id=str(user_id),
        model_id=model_id,
        photo_keys=photo_keys,
        subject_token=token,
        class_word=class_word,
        base_model=s.base_model,
        params=train_params(s, s.base_model),
        renders=[TRAIN_PREVIEW],
        held_out_photo=len(photo_keys) - 1 if len(photo_keys) >= 3 else None,
        issued_at=time.time(),
    )


def render_job(
    s: Settings,
    model: ModelView,
    *,
    job_id: str,
    order_id: str,
    user_id: object,
    prompt: str,
    negative_prompt: str,
    seed: int,
    count: int,
    width: int,
    height: int,
    guidance: float,
    mode: str = "txt2img",
    source_key: str | None = None,
    face_detail: bool = False,
    backdrop: BackdropStyle | None = None,
) -> RenderJob:
    """The RenderJob of a picture of ``model``'s subject."""
    return RenderJob(
        job_id=job_id,
        order_id=order_id,
        user_id=str(user_id),
        model_id=model.id,
        model_keys=[model.lora_key] if model.lora_key else [],
        subject=f"{model.subject_token} {model.class_word}",
        base_model=model.base_model,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        count=count,
        width=width,
        height=height,
        steps=s.render_steps,
        guidance=guidance,
        mode=mode,
        source_key=source_key,
        face_detail=face_detail and s.render_face_detail,
        issued_at=time.time(),
        backdrop=backdrop,
    )


def enqueue(
    b: Backends,
    order_id: str,
    job_id: str,
    credits_left: int,
    send: Callable[[], object],
    undo: Callable[[], object] | None = None,
) -> Placed:
    """Store and queue a recorded order; on failure undo what was stored, fail the order (refunding it) and
    re-raise, so nothing is left half-written."""
    try:
        send()
    except Exception:
        if undo is not None:
            undo()
        lifecycle.fail_order(
            b.engine, order_id, "enqueue_failed", "We could not queue your order; credits refunded."
        )
        raise
    lifecycle.mark_queued(b.engine, order_id)
    position, eta = lifecycle.queue_position(b.engine, order_id)
    return Placed(order_id, job_id, position, eta, credits_left)
