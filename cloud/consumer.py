"""Receiving typed messages: the one place where a queue body becomes a TrainJob, RenderJob or Event.

A body that does not decode (malformed JSON, a missing field, an unknown version) is moved to the dead-letter
queue with the reason and logged; the caller only ever sees good messages, so one bad body can neither crash a
consumer nor come back ``max_receives`` times to be tried again.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from pydantic import BaseModel

from cloud.messages import MessageError, decode
from cloud.queues.base import JobQueue, Lease

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def receive(
    queue: JobQueue, model: type[M], max_messages: int = 1, wait_s: float = 0, lease_s: int = 30
) -> list[tuple[Lease, M]]:
    """Receive up to ``max_messages`` and decode each as ``model``; dead-letter the ones that do not decode."""
    good: list[tuple[Lease, M]] = []
    for lease in queue.receive(max_messages=max_messages, wait_s=wait_s, lease_s=lease_s):
        try:
            good.append((lease, decode(lease.body, model)))  # type: ignore[type-var]
        except MessageError as err:
            reason = str(err)
            # The body is not logged: it may carry member data; the id finds it in the dead-letter queue.
            log.warning("dead-lettering message %s from %s: %s", lease.message_id, queue.name, reason)
            try:
                queue.dead_letter(lease, reason)
            except Exception as dl_err:
                # Lease lost or the queue hiccuped: the message comes back and is dead-lettered next time.
                log.warning(
                    "could not dead-letter message %s from %s: %s", lease.message_id, queue.name, dl_err
                )
    return good
