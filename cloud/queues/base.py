"""The job queue interface. Same semantics for the embedded SQLite and the SQS backends:

at-least-once delivery; ``receive`` hands out a Lease (visibility timeout); ``extend`` renews it
(heartbeat); ``ack`` deletes; ``release(delay)`` makes it visible again; after ``max_receives``
deliveries a message moves to the dead-letter queue; ``depth()`` gives visible and in-flight counts;
``dead_letters()`` lists the dead-letter queue without taking anything and ``redrive(id)`` moves one back.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


class QueueError(Exception):
    """Base of queue errors."""


class LeaseExpired(QueueError):
    """The lease ran out (or another consumer holds the message now): the caller no longer owns it."""


@dataclass
class Lease:
    """One received message and the right to work on it until ``deadline`` (time.monotonic())."""

    message_id: str
    body: str
    receipt: str
    receive_count: int
    queue_name: str
    deadline: float
    sent_at: float | None = None  # wall-clock epoch seconds when the message was sent, if known
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int = 0

    @property
    def backlog(self) -> int:
        return self.visible + self.in_flight + self.delayed


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead-letter queue, as listed (not taken: listing leaves it there)."""

    message_id: str
    body: str
    reason: str | None  # why it was dead-lettered, when known
    sent_at: float | None = None  # wall-clock epoch seconds of the original send, if known


class JobQueue(ABC):
    name: str

    @abstractmethod
    def send(self, body: str, delay_s: int = 0) -> str:
        """Enqueue ``body``; return the message id."""

    @abstractmethod
    def receive(self, max_messages: int = 1, wait_s: float = 0, lease_s: int = 30) -> list[Lease]:
        """Up to ``max_messages`` messages, waiting up to ``wait_s`` (long poll, ≤ 20 s) for the first."""

    @abstractmethod
    def extend(self, lease: Lease, lease_s: int) -> None:
        """Renew the lease for ``lease_s`` seconds from now; raise LeaseExpired if it was lost."""

    @abstractmethod
    def ack(self, lease: Lease) -> None:
        """Delete the message; raise LeaseExpired if the lease ran out first (the work may be redone)."""

    @abstractmethod
    def release(self, lease: Lease, delay_s: int = 0) -> None:
        """Give the message back: visible again after ``delay_s``."""

    @abstractmethod
    def dead_letter(self, lease: Lease, reason: str) -> None:
        """Move the message to the dead-letter queue now (malformed body, unknown version)."""

    @abstractmethod
    def depth(self) -> QueueDepth: ...

    @abstractmethod
    def dead_letter_depth(self) -> int: ...

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` messages of the dead-letter queue, oldest first, left in place."""

    @abstractmethod
    def redrive(self, message_id: str) -> bool:
        """Move the dead letter ``message_id`` back to this queue, delivered afresh (receive count from zero);
        False when the dead-letter queue holds no such message."""

    @abstractmethod
    def purge(self) -> None:
        """Delete everything in the queue and its dead-letter queue (tests, admin)."""

    def close(self) -> None:  # noqa: B027 - not abstract: a backend with nothing to close needs nothing here
        """Release connections; the queue is unusable afterwards."""
