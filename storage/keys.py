"""The blob key layout (ARCHITECTURE.md). Keys are deterministic per job, so a retry overwrites.

Everything a member owns lives under ``users/{user_id}/``: forgetting a member is deleting a prefix.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _id(value: object, what: str) -> str:
    text = str(value)
    if not _ID.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a valid id")
    return text


def user_prefix(user_id: object) -> str:
    return f"users/{_id(user_id, 'user id')}/"


def photo_key(user_id: object, order_id: object, n: int) -> str:
    return f"{user_prefix(user_id)}photos/{_id(order_id, 'order id')}/{int(n)}.jpg"


def photos_prefix(user_id: object, order_id: object) -> str:
    return f"{user_prefix(user_id)}photos/{_id(order_id, 'order id')}/"


def model_prefix(user_id: object, model_id: object) -> str:
    return f"{user_prefix(user_id)}models/{_id(model_id, 'model id')}/"


def model_key(user_id: object, model_id: object) -> str:
    return f"{model_prefix(user_id, model_id)}lora.safetensors"


def model_meta_key(user_id: object, model_id: object) -> str:
    return f"{model_prefix(user_id, model_id)}meta.json"


def likeness_key(user_id: object, model_id: object) -> str:
    """The model's likeness reference (face descriptors of its photos), deleted with the model."""
    return f"{model_prefix(user_id, model_id)}likeness.json"


def likeness_key_beside(model_key_: str) -> str | None:
    """The likeness reference beside a LoRA stored at ``model_key(...)``; None for a key of another layout."""
    head, sep, tail = model_key_.rpartition("/")
    return f"{head}/likeness.json" if sep and tail == "lora.safetensors" and "/models/" in f"/{head}" else None


def render_prefix(user_id: object, job_id: object) -> str:
    return f"{user_prefix(user_id)}renders/{_id(job_id, 'job id')}/"


def render_key(user_id: object, job_id: object, n: int) -> str:
    return f"{render_prefix(user_id, job_id)}{int(n)}.png"


def checkpoint_prefix(job_id: object) -> str:
    return f"checkpoints/{_id(job_id, 'job id')}/"


def preview_prefix(user_id: object, job_id: object) -> str:
    """A job's previews: under the member's prefix (a training preview is their likeness), so forgetting a member
    deletes them too."""
    return f"{user_prefix(user_id)}previews/{_id(job_id, 'job id')}/"


def preview_key(user_id: object, job_id: object, step: int) -> str:
    return f"{preview_prefix(user_id, job_id)}{int(step)}.jpg"


def done_marker_key(job_id: object) -> str:
    """Written after a job's outputs and before its done event: a redelivered job with this marker is acked."""
    return f"done/{_id(job_id, 'job id')}.json"


def class_images_prefix(digest: str, class_word: str) -> str:
    """Prior-preservation images shared by every member (made by the base model, nobody's data): outside
    ``users/``. ``digest`` names the base model, prompt, size, steps and seed that made them."""
    slug = re.sub(r"[^a-z0-9-]+", "-", class_word.lower()).strip("-")[:40] or "class"
    return f"shared/class-images/{_id(digest, 'digest')}/{slug}/"


def class_image_key(digest: str, class_word: str, n: int) -> str:
    return f"{class_images_prefix(digest, class_word)}{int(n):05d}.png"
