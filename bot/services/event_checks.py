"""Is an agent event about its own order? Checked before an event touches the order store.

Anything that can write to the events queue can claim anything: a forged progress event once named another
member's training photo as its preview, and the bot posted that photo in a public channel. An event is
accepted only when its job is one of the order's jobs and every blob key it names (outputs, preview) lies
under the order owner's prefix (``users/{owner}/``: renders, models and previews all live there). Pure.
"""

from __future__ import annotations

from collections.abc import Collection

from cloud.messages import Event
from storage import keys
from storage.blobs.base import InvalidKey, validate_key


def forged_reason(event: Event, owner_id: str, kind: str, job_ids: Collection[str]) -> str | None:
    """Why ``event`` cannot belong to the order owned by ``owner_id`` with these jobs; None when it can."""
    if event.job_id not in job_ids:
        return f"job {event.job_id} is not one of order {event.order_id}'s jobs"
    if event.job_kind != kind:
        return f"a {event.job_kind} event for a {kind} order"
    allowed = keys.user_prefix(owner_id)
    named = [*event.output_keys, *event.render_keys, *([event.model_key] if event.model_key else [])]
    if event.progress is not None and event.progress.preview_key is not None:
        named.append(event.progress.preview_key)
    for key in named:
        try:
            validate_key(key)
        except InvalidKey:
            return "a malformed blob key"
        if not key.startswith(allowed):
            return f"blob key {key[:120]!r} outside the owner's prefix"
    return None
