"""Whether a job's order was cancelled or its member forgotten (storage/tombstones.py), asked cheaply.

The training loop asks every step and the agent's watch loop every fraction of a second, so answers are cached
for ``ttl_s``; the checks before an upload ask afresh, so nothing is uploaded once the tombstone exists.
"""

from __future__ import annotations

import logging
import threading
import time

from cloud.messages import RenderJob, TrainJob
from storage import keys, tombstones
from storage.blobs.base import BlobStore

log = logging.getLogger(__name__)

StopReason = tombstones.Withdrawal
CHECK_TTL_S = 1.0

MESSAGES: dict[str, str] = {
    "cancelled": "This order was cancelled; the GPU machine stopped working on it.",
    "forgotten": "Your data was deleted at your request; this order was stopped.",
}


class JobCancelled(Exception):
    """Raised before an upload when the job's order was cancelled or its member forgotten."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason = reason


class StopCheck:
    """``check()``: "forgotten", "cancelled" or None, cached for ``ttl_s``; ``check(fresh=True)`` asks now.
    Once it has seen a tombstone it keeps answering so (tombstones are never removed). Thread-safe."""

    def __init__(self, blobs: BlobStore, job: TrainJob | RenderJob, ttl_s: float = CHECK_TTL_S) -> None:
        self.blobs = blobs
        self.job = job
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._reason: StopReason | None = None

    def check(self, *, fresh: bool = False) -> StopReason | None:
        with self._lock:
            if self._reason is not None:
                return self._reason
            now = time.monotonic()
            if not fresh and now - self._checked_at < self.ttl_s:
                return None
            self._checked_at = now
            try:
                self._reason = tombstones.withdrawn(
                    self.blobs,
                    user_id=self.job.user_id,
                    order_id=self.job.order_id,
                    issued_at=self.job.issued_at,
                )
            except Exception:
                # The store is unreachable: the job goes on (its uploads will fail the same way, and the next
                # check asks again); a store outage must not cancel everyone's work.
                log.warning("could not check whether job %s was cancelled", self.job.job_id, exc_info=True)
            return self._reason

    def guard(self) -> None:
        """Before an upload: raise JobCancelled if the job must not write anything more."""
        reason = self.check(fresh=True)
        if reason is not None:
            raise JobCancelled(reason)


def job_prefixes(job: TrainJob | RenderJob) -> list[str]:
    """The prefixes a job writes to (deleted when it is cancelled)."""
    model_id = job.model_id if isinstance(job, TrainJob) else None
    return keys.job_output_prefixes(job.user_id, job.job_id, model_id)
