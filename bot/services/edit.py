"""Instruction edits (/edit and the Edit button on results): what may be edited, the photo check of an upload,
and placing the order (a RenderJob in mode "edit", charged like a render).

What may be edited: a picture of one of the member's own delivered results (not a group picture: the others
agreed to that picture, not to changes of it), or a photo of themselves they upload, which passes the /train
photo checks (decode limits, one clear face, large and sharp enough) and is stored as its face-centred crop,
without metadata, under their photos prefix. With a trained model the member's LoRA is active during the edit
(``keep_face``) and the result is scored against their likeness reference either way.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from bot.backends import Backends
from bot.checks import GuildRules
from bot.errors import NotAllowed, NotFound, Refused
from bot.services import deletion
from bot.services.member_orders import (
    _enqueue,
    _own_order,
    _own_ready_model,
    create_render_order,
    refuse_blocked_words,
    result_title,
)
from bot.services.records import Placed
from cloud.messages import EDIT_IMAGE_GUIDANCE, EDIT_TEXT_GUIDANCE, RenderJob, encode, new_id
from storage import keys, lifecycle
from storage.lifecycle import ModelView, OrderView
from storage.settings import Settings

MAX_SEED = 2**31 - 1
GROUP_REFUSAL = (
    "Group pictures cannot be edited: everyone pictured agreed to that picture, not to changes of it. "
    "Nothing was charged."
)


def check_upload(settings: Settings, label: str, data: bytes) -> tuple[bytes, tuple[int, int]]:
    """The /train photo checks on one uploaded photo; its face-centred crop (JPEG, no metadata) to edit, and
    the crop's size. Raises Refused with the check's own words. Blocking: call in the intake pool."""
    from gpu_agent import photos

    config = photos.PhotoCheckConfig.from_settings(settings)
    try:
        report = photos.check_photos([(label, data)], config)
    except photos.FaceModelsMissing:
        raise Refused("Photo checks are not available on this bot right now; try again later.") from None
    (result,) = report.photos
    if not result.ok:
        raise Refused(
            f"That photo cannot be edited: {result.reason}. /edit takes a photo of you alone. "
            "Nothing was stored or charged."
        )
    side = config.crop_size
    return result.crop_jpeg, (side, side)


def refuse_another_person(b: Backends, user_id: int, model_id: str | None, data: bytes) -> None:
    """With a trained model and its likeness reference, an upload must show the person it was trained on (the
    likeness check's same-person distance, on the whole photo, which already passed ``check_upload``): /edit is
    for photos of yourself. Without a reference there is nothing to compare with, and the photo checks alone
    apply. Blocking: call in the intake pool."""
    from gpu_agent.photos import FaceModelsMissing
    from gpu_agent.photos.likeness import BadReference, Reference, score_picture
    from storage.blobs.base import BlobNotFound

    model = _member_model(b, user_id, model_id)
    if model is None:
        return
    try:
        reference = Reference.from_json(b.blobs.get(keys.likeness_key(user_id, model.id)))
        verdict = score_picture(reference, data).verdict
    except (BlobNotFound, BadReference, FaceModelsMissing):
        return
    if verdict == "weak":
        raise Refused(
            "That photo does not look like the person your model was trained on: /edit takes photos of you "
            "only. Nothing was stored or charged."
        )


def _member_model(b: Backends, user_id: int, model_id: str | None) -> ModelView | None:
    """The member's named model (it must be theirs and ready), else their newest ready one, else None."""
    if model_id is not None:
        return _own_ready_model(b, user_id, model_id)
    ready = [m for m in lifecycle.list_models(b.engine, user_id) if m.status == "ready"]
    return ready[0] if ready else None


def place_edit_order(
    b: Backends,
    *,
    guild_id: int | None,
    channel_id: int | None,
    user_id: int,
    instruction: str,
    rules: GuildRules,
    source_key: str | None = None,
    photo: bytes | None = None,
    size: tuple[int, int] = (512, 512),
    model_id: str | None = None,
    keep_face: bool = True,
    guidance: float | None = None,
    image_guidance: float | None = None,
    count: int = 1,
    seed: int | None = None,
    parent_order_id: str | None = None,
    label: str = "Edit",
) -> Placed:
    """An edit of ``source_key`` (a stored picture of the member's) or of ``photo`` (a checked upload, stored
    here): rows and credits first, like every order, then the upload, then the RenderJob."""
    if (source_key is None) == (photo is None):
        raise ValueError("an edit starts from one stored picture or one uploaded photo")
    deletion.refuse_while_forgetting(b, user_id)
    refuse_blocked_words(instruction, rules)
    model = _member_model(b, user_id, model_id)
    s = b.settings
    order_id, job_id = new_id(), new_id()
    if photo is not None:
        source_key = keys.photo_key(user_id, order_id, 0)
    assert source_key is not None
    seed = secrets.randbelow(MAX_SEED) if seed is None else seed
    text_guidance = EDIT_TEXT_GUIDANCE if guidance is None else guidance
    width, height = (min(2048, max(64, side)) // 8 * 8 for side in size)
    job = RenderJob(
        job_id=job_id,
        order_id=order_id,
        user_id=str(user_id),
        model_id=model.id if model else None,
        model_keys=[model.lora_key] if model and model.lora_key else [],
        subject=f"{model.subject_token} {model.class_word}" if model else "",
        base_model=model.base_model if model else s.base_model,
        prompt=instruction,
        seed=seed,
        count=count,
        width=width,
        height=height,
        steps=s.render_steps,
        guidance=text_guidance,
        mode="edit",
        source_key=source_key,
        image_guidance=image_guidance,
        edit_lora=keep_face,
        issued_at=time.time(),
    )
    params: dict[str, Any] = {
        "title": result_title(f"{label}: {instruction}"),
        "words": result_title(instruction),
        "style": None,
        "model_name": model.name if model and keep_face else None,
        "prompt": instruction,
        "negative_prompt": "",
        "count": count,
        "width": width,
        "height": height,
        "seed": seed,
        "guidance": text_guidance,
        "image_guidance": image_guidance if image_guidance is not None else EDIT_IMAGE_GUIDANCE,
        "keep_face": keep_face,
        "mode": "edit",
        "source_key": source_key,
        "uploaded": photo is not None,
        "parent_order_id": parent_order_id,
        "face_detail": False,
    }
    credits_left = create_render_order(
        b,
        order_id=order_id,
        job=job,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        params=params,
        rules=rules,
        model_id=model.id if model else None,
    )

    def send() -> None:
        if photo is not None:
            b.blobs.put(source_key, photo, content_type="image/jpeg")
        b.queues.render.send(encode(job))

    undo = (lambda: b.blobs.delete_prefix(keys.photos_prefix(user_id, order_id))) if photo else None
    return _enqueue(b, order_id, job_id, credits_left, send, undo=undo)


def editable_order(b: Backends, order_id: str, user_id: int) -> OrderView:
    """A member's own delivered result that is not a group picture, or a refusal saying why."""
    order = lifecycle.get_order(b.engine, order_id)
    if order is None or str(order.user_id) != str(user_id):
        raise NotAllowed("These buttons belong to the member who made the pictures.")
    if order.params.get("group"):
        raise Refused(GROUP_REFUSAL)
    if order.kind != "render" or order.status != "delivered":
        raise Refused("Those pictures are not finished yet.")
    return order


def editable_picture(b: Backends, order_id: str, n: int, user_id: int) -> tuple[str, OrderView]:
    """(blob key, the order) of picture ``n`` of a member's own delivered result, or a refusal saying why."""
    order = editable_order(b, order_id, user_id)
    image_keys = lifecycle.image_keys(b.engine, order_id)
    if not 0 <= n < len(image_keys):
        raise NotFound(f"There is no picture {n + 1} in that result.")
    if not b.blobs.exists(image_keys[n]):
        raise NotFound(f"Picture {n + 1} of that result was not posted, so it cannot be edited.")
    return image_keys[n], order


def edit_result(
    b: Backends,
    parent_id: str,
    n: int,
    instruction: str,
    *,
    user_id: int,
    channel_id: int | None,
    rules: GuildRules,
) -> Placed:
    """The Edit button's order: picture ``n`` of the member's result, changed as ``instruction`` says, with the
    model that made it (or their newest) keeping the face."""
    source_key, parent = editable_picture(b, parent_id, n, user_id)
    p = parent.params
    scale = 2 if p.get("mode") == "upscale" else 1
    return place_edit_order(
        b,
        guild_id=int(parent.guild_id) if parent.guild_id else None,
        channel_id=channel_id,
        user_id=user_id,
        instruction=instruction,
        rules=rules,
        source_key=source_key,
        size=(int(p.get("width", 512)) * scale, int(p.get("height", 512)) * scale),
        model_id=parent.model_id if _still_ready(b, user_id, parent.model_id) else None,
        parent_order_id=parent_id,
        label=f"Edit of picture {n + 1}",
    )


def reroll_edit(
    b: Backends, parent_id: str, *, user_id: int, channel_id: int | None, rules: GuildRules
) -> Placed:
    """🔄 on an edit: the same edit of the same picture, from a new seed."""
    parent = _own_order(b, parent_id, user_id)
    p = parent.params
    if parent.kind != "render" or parent.status != "delivered" or p.get("mode") != "edit":
        raise Refused("Those pictures are not finished yet.")
    if not b.blobs.exists(p["source_key"]):
        raise NotFound("The picture that edit started from is gone (uploaded photos expire).")
    return place_edit_order(
        b,
        guild_id=int(parent.guild_id) if parent.guild_id else None,
        channel_id=channel_id,
        user_id=user_id,
        instruction=p["prompt"],
        rules=rules,
        source_key=p["source_key"],
        size=(int(p["width"]), int(p["height"])),
        model_id=parent.model_id if _still_ready(b, user_id, parent.model_id) else None,
        keep_face=bool(p.get("keep_face", True)),
        guidance=p.get("guidance"),
        image_guidance=p.get("image_guidance"),
        count=int(p.get("count", 1)),
        parent_order_id=parent_id,
    )


def _still_ready(b: Backends, user_id: int, model_id: str | None) -> bool:
    return model_id is not None and any(
        m.id == model_id and m.status == "ready" for m in lifecycle.list_models(b.engine, user_id)
    )
