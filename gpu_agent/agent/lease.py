"""The lease keeper: renews a job's visibility while the agent works on it.

If a renewal fails with LeaseExpired, another agent may own the message now, so this agent must stop the job and
write no result. A transient error (network) is retried at the next beat; the lease itself has slack for that
(lease_s is longer than the heartbeat).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

from cloud.queues.base import JobQueue, Lease, LeaseExpired

log = logging.getLogger(__name__)


class LeaseKeeper:
    """A daemon thread that calls ``queue.extend(lease, lease_s)`` every ``heartbeat_s`` until stopped."""

    def __init__(
        self,
        queue: JobQueue,
        lease: Lease,
        *,
        lease_s: int,
        heartbeat_s: float,
        on_lost: Callable[[], None],
    ) -> None:
        if heartbeat_s >= lease_s:
            raise ValueError(f"heartbeat ({heartbeat_s} s) must be shorter than the lease ({lease_s} s)")
        self.queue = queue
        self.lease = lease
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._lost = threading.Event()
        self.renewals = 0
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.message_id[:8]}", daemon=True)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.queue.extend(self.lease, self.lease_s)
                self.renewals += 1
            except LeaseExpired as err:
                log.warning("lease lost on %s: %s; stopping the job", self.queue.name, err)
                self._lost.set()
                self._on_lost()
                return
            except Exception:
                log.warning(
                    "lease renewal on %s failed; retrying at the next beat", self.queue.name, exc_info=True
                )
