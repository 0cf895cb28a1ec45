"""The blob key layout (ARCHITECTURE.md). Keys are deterministic per job, so a retry overwrites.

Everything a member owns lives under ``users/{user_id}/``: forgetting a member is deleting a prefix.
"""

from __future__ import annotations

import re

from storage.contracts import ID_RE as _ID


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
    return (
        f"{head}/likeness.json" if sep and tail == "lora.safetensors" and "/models/" in f"/{head}" else None
    )


def render_prefix(user_id: object, job_id: object) -> str:
    return f"{user_prefix(user_id)}renders/{_id(job_id, 'job id')}/"


def render_key(user_id: object, job_id: object, n: int) -> str:
    return f"{render_prefix(user_id, job_id)}{int(n)}.png"


def checkpoint_prefix(user_id: object, job_id: object) -> str:
    """A training's checkpoints: under the member's prefix, so forgetting the member deletes them too."""
    return f"{user_prefix(user_id)}checkpoints/{_id(job_id, 'job id')}/"


def job_output_prefixes(user_id: object, job_id: object, model_id: object | None = None) -> list[str]:
    """Everything a job writes of its member: its pictures, its checkpoints and, for a training, its model."""
    found = [render_prefix(user_id, job_id), checkpoint_prefix(user_id, job_id)]
    if model_id is not None:
        found.append(model_prefix(user_id, model_id))
    return found


def model_of(key: str) -> str | None:
    """The model id of a ``users/{user_id}/models/{model_id}/...`` key; None for any other key."""
    parts = key.split("/")
    if owner_of(key) is not None and len(parts) > 4 and parts[2] == "models" and _ID.fullmatch(parts[3]):
        return parts[3]
    return None


def is_model_key(key: str) -> bool:
    """True for a LoRA stored at ``model_key(...)``: only for reading events of agents older than typed outputs."""
    parts = key.split("/")
    return model_of(key) is not None and len(parts) == 5 and parts[4] == "lora.safetensors"


def is_render_key(key: str) -> bool:
    """True for a picture stored at ``render_key(...)``: only for reading events of agents older than typed
    outputs."""
    parts = key.split("/")
    return (
        owner_of(key) is not None
        and len(parts) == 5
        and parts[2] == "renders"
        and _ID.fullmatch(parts[3]) is not None
    )


def owner_of(key: str) -> str | None:
    """The member id a ``users/{user_id}/...`` key belongs to; None for any other key."""
    parts = key.split("/")
    if len(parts) > 2 and parts[0] == "users" and _ID.fullmatch(parts[1]):
        return parts[1]
    return None


def preview_prefix(user_id: object, job_id: object) -> str:
    """A job's previews: under the member's prefix (a training preview is their likeness), so forgetting a member
    deletes them too."""
    return f"{user_prefix(user_id)}previews/{_id(job_id, 'job id')}/"


def preview_key(user_id: object, job_id: object, step: int) -> str:
    return f"{preview_prefix(user_id, job_id)}{int(step)}.jpg"


def done_marker_key(user_id: object, job_id: object) -> str:
    """Written after a job's outputs and before its done event: a redelivered job with this marker is acked.
    Under the member's prefix: the marker holds the done event, which names the member's files."""
    return f"{user_prefix(user_id)}done/{_id(job_id, 'job id')}.json"


# --- control records (outside users/: forgetting a member must not delete the record that says so) ----------

CONTROL_PREFIX = "control/"
SWEEPS_PREFIX = f"{CONTROL_PREFIX}sweeps/"


def cancelled_order_key(order_id: object) -> str:
    """Exists once the order was cancelled: agents stop its job and upload nothing more of it."""
    return f"{CONTROL_PREFIX}cancelled/{_id(order_id, 'order id')}"


def forgotten_user_key(user_id: object) -> str:
    """Exists once the member was forgotten: agents drop every job of theirs."""
    return f"{CONTROL_PREFIX}forgotten/{_id(user_id, 'user id')}"


def sweep_key(sweep_id: object) -> str:
    """A deletion to repeat once the work in flight has settled (bodies: prefixes and a due time)."""
    return f"{SWEEPS_PREFIX}{_id(sweep_id, 'sweep id')}.json"


def class_images_prefix(digest: str, class_word: str) -> str:
    """Prior-preservation images shared by every member (made by the base model, nobody's data): outside
    ``users/``. ``digest`` names the base model, prompt, size, steps and seed that made them."""
    slug = re.sub(r"[^a-z0-9-]+", "-", class_word.lower()).strip("-")[:40] or "class"
    return f"shared/class-images/{_id(digest, 'digest')}/{slug}/"


def class_image_key(digest: str, class_word: str, n: int) -> str:
    return f"{class_images_prefix(digest, class_word)}{int(n):05d}.png"
