"""The names every layer shares: order status, job kind, event kind, and the one id pattern.

They live in storage, the bottom layer, so the order store, the queue messages (cloud/messages.py), the agent
and the bot all use the same values. Each enum member IS its string (``StrEnum``): rows, JSON bodies and
queued messages written before these enums existed read back unchanged.
"""

from __future__ import annotations

import re
from enum import StrEnum

#: Every id Photogen hands out or accepts in a key, a message or a button (uuid4 hex, Discord snowflakes).
ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
ID_RE = re.compile(ID_PATTERN)


def is_id(value: object) -> bool:
    """True for a string the id pattern accepts whole."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


class OrderStatus(StrEnum):
    """Where an order is (storage/lifecycle.py moves it; only forward, or to failed/cancelled)."""

    CREATED = "created"
    QUEUED = "queued"
    TRAINING = "training"
    TRAINED = "trained"
    RENDERING = "rendering"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(StrEnum):
    """What a job (and the order that placed it) does: train a model, or render pictures."""

    TRAIN = "train"
    RENDER = "render"


class EventKind(StrEnum):
    """What an agent reports about a job."""

    STARTED = "started"
    PROGRESS = "progress"
    CHECKPOINT = "checkpoint"
    DONE = "done"
    FAILED = "failed"
    PREEMPTED = "preempted"
