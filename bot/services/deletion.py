"""How a cancel, a model deletion and /forget-me reach the GPU agents (storage/tombstones.py).

The bot records the decision in its database first (the order is cancelled and refunded there once), then
leaves the tombstone the agents check, deletes the files, and schedules a second deletion for when the work
that was in flight has settled (DELETION_RESWEEP_S): an upload that raced the first deletion is removed then,
even across a bot restart (the sweep record lives in the blob store; the privacy cog runs due sweeps).
"""

from __future__ import annotations

import time

from bot.backends import Backends
from bot.errors import Busy
from storage import keys, lifecycle, tombstones
from storage.lifecycle import OrderView


def _due(b: Backends) -> float:
    return time.time() + b.settings.deletion_resweep_s


def order_cancelled(b: Backends, order: OrderView) -> None:
    """After the order was cancelled in the database: stop its job and delete its photos and what it wrote."""
    tombstones.mark_cancelled(b.blobs, order.id)
    job_id = lifecycle.job_id_of(b.engine, order.id)
    if job_id is None:
        return
    model_id = order.model_id if order.kind == "train" else None  # a render's model_id is the model it used
    prefixes = keys.job_output_prefixes(order.user_id, job_id, model_id)
    if order.kind == "train":
        prefixes.append(keys.photos_prefix(order.user_id, order.id))
    for prefix in prefixes:
        b.blobs.delete_prefix(prefix)
    tombstones.schedule_sweep(b.blobs, f"order-{order.id}", prefixes, _due(b))


def model_deleted(b: Backends, user_id: int, model_id: str) -> None:
    """Before the model's files are deleted: cancel (and refund) the open orders that train or use it, so no
    job re-uploads it; and delete its folder again later."""
    for order in lifecycle.list_orders(b.engine, user_id, limit=1000, active_only=True):
        if order.model_id != model_id:
            continue
        if lifecycle.cancel_order(b.engine, order.id, by="model deletion") is not None:
            order_cancelled(b, order)
    tombstones.schedule_sweep(b.blobs, f"model-{model_id}", [keys.model_prefix(user_id, model_id)], _due(b))


def member_forgotten(b: Backends, user_id: int) -> None:
    """Before the member's files are deleted: agents drop their jobs and upload nothing more of theirs."""
    tombstones.mark_forgotten(b.blobs, user_id)


def refuse_while_forgetting(b: Backends, user_id: int) -> None:
    """A member who just used /forget-me orders again only once the second deletion has run, which would
    otherwise delete the new order's photos."""
    if tombstones.sweep_pending(b.blobs, f"member-{user_id}"):
        raise Busy("Your data is still being deleted. Please try again in a few minutes.")


def resweep_member(b: Backends, user_id: int) -> None:
    """After the member's files were deleted: delete the prefix again once in-flight work has settled."""
    tombstones.schedule_sweep(b.blobs, f"member-{user_id}", [keys.user_prefix(user_id)], _due(b))


def resweep(b: Backends, name: str, prefixes: list[str]) -> None:
    """Delete these prefixes again once in-flight work has settled (an admin's purge in one server)."""
    tombstones.schedule_sweep(b.blobs, name, prefixes, _due(b))


def run_due_sweeps(b: Backends) -> int:
    return tombstones.run_due_sweeps(b.blobs)


def sweep_interval_s(b: Backends) -> float:
    return min(30.0, max(0.5, b.settings.deletion_resweep_s / 4))
