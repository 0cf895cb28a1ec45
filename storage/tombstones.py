"""Tombstones and re-sweeps: how a cancel, a model deletion or /forget-me reaches work the bot cannot see.

GPU agents never open the bot's database; they see the queues and the blob store. So the bot leaves a small
control record there (``control/cancelled/{order_id}``, ``control/forgotten/{user_id}``: an id and a time,
nothing else) that agents check while a job runs and before every upload. Anyone handing a queued or
dead-lettered job back to work (a redrive) asks ``withdrawn`` (or ``is_cancelled`` / ``is_forgotten``) first.

A deletion races the uploads already under way, so it is repeated once that work has settled: a sweep record
under ``control/sweeps/`` names the prefixes and the time it is due; it is durable (a bot restart finds it)
and is deleted only after its prefixes were.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from storage import keys
from storage.blobs.base import BlobNotFound, BlobStore

log = logging.getLogger(__name__)


def _mark(blobs: BlobStore, key: str) -> None:
    blobs.put(key, json.dumps({"at": round(time.time(), 3)}).encode(), content_type="application/json")


def _exists(blobs: BlobStore, make_key: Callable[[object], str], value: object) -> bool:
    try:
        key = make_key(value)
    except ValueError:
        return False  # not a valid id: nothing can carry that tombstone
    return blobs.exists(key)


def mark_cancelled(blobs: BlobStore, order_id: str) -> None:
    _mark(blobs, keys.cancelled_order_key(order_id))


def mark_forgotten(blobs: BlobStore, user_id: object) -> None:
    _mark(blobs, keys.forgotten_user_key(user_id))


def is_cancelled(blobs: BlobStore, order_id: str) -> bool:
    return _exists(blobs, keys.cancelled_order_key, order_id)


def is_forgotten(blobs: BlobStore, user_id: object, issued_at: float | None = None) -> bool:
    """Was the member forgotten (after ``issued_at``, when a job says when it was placed: a member may come
    back after /forget-me, and their new orders must run)?"""
    if issued_at is None:
        return _exists(blobs, keys.forgotten_user_key, user_id)
    at = forgotten_at(blobs, user_id)
    return at is not None and at >= issued_at


def forgotten_at(blobs: BlobStore, user_id: object) -> float | None:
    """When the member was (last) forgotten; None if never."""
    try:
        body = blobs.get(keys.forgotten_user_key(user_id))
    except (BlobNotFound, ValueError):
        return None
    try:
        return float(json.loads(body)["at"])
    except (ValueError, KeyError, TypeError):
        return float("inf")  # unreadable: the safe side is to treat everything as forgotten


Withdrawal = Literal["forgotten", "cancelled"]


def withdrawn(
    blobs: BlobStore, *, user_id: object, order_id: str, issued_at: float | None = None
) -> Withdrawal | None:
    """Why a job of this member and order (placed at ``issued_at``, if known) must not run or be redriven:
    "forgotten", "cancelled" or None."""
    if is_forgotten(blobs, user_id, issued_at):
        return "forgotten"
    if is_cancelled(blobs, order_id):
        return "cancelled"
    return None


# --- re-sweeps ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    id: str
    prefixes: list[str]
    due_at: float


def schedule_sweep(blobs: BlobStore, sweep_id: str, prefixes: list[str], due_at: float) -> None:
    """Delete ``prefixes`` again at ``due_at`` (run_due_sweeps does it); each must lie under users/."""
    for prefix in prefixes:
        if keys.owner_of(prefix) is None:
            raise ValueError(f"a sweep deletes only members' files, not {prefix!r}")
    body = {"prefixes": prefixes, "due_at": round(due_at, 3)}
    blobs.put(keys.sweep_key(sweep_id), json.dumps(body).encode(), content_type="application/json")


def sweep_pending(blobs: BlobStore, sweep_id: str) -> bool:
    return blobs.exists(keys.sweep_key(sweep_id))


def pending_sweeps(blobs: BlobStore) -> list[Sweep]:
    found = []
    for key in list(blobs.list(keys.SWEEPS_PREFIX)):
        sweep_id = key.removeprefix(keys.SWEEPS_PREFIX).removesuffix(".json")
        try:
            body = json.loads(blobs.get(key))
            prefixes = [str(p) for p in body["prefixes"] if keys.owner_of(str(p)) is not None]
            found.append(Sweep(sweep_id, prefixes, float(body["due_at"])))
        except BlobNotFound:
            continue  # swept by another process meanwhile
        except (ValueError, KeyError, TypeError):
            log.warning("dropping unreadable sweep record %s", key)
            blobs.delete(key)
    return found


def run_due_sweeps(blobs: BlobStore, now: float | None = None) -> int:
    """Carry out every sweep that is due; return how many files they deleted."""
    now = time.time() if now is None else now
    deleted = 0
    for sweep in pending_sweeps(blobs):
        if sweep.due_at > now:
            continue
        count = sum(blobs.delete_prefix(prefix) for prefix in sweep.prefixes)
        blobs.delete(keys.sweep_key(sweep.id))
        if count:
            log.info("sweep %s deleted %d file(s) written after the deletion", sweep.id, count)
        deleted += count
    return deleted
