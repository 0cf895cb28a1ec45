"""Mixed-member batches in the agent: gather a few render jobs, let compatible ones share one denoising batch.

The policy (settings RENDER_BATCH_MAX = B, RENDER_BATCH_WAIT_MS = T):

1. ``gather_renders``: having received a render message, the agent takes up to B-1 more render messages that
   are already waiting, for at most T ms. A lone job is delayed by T at most (100 ms by default), against a
   render of seconds.
2. The gathered jobs are handled side by side, each in its own thread through the agent's ordinary per-job
   path (worker.Agent._handle): its own lease and heartbeat, progress and previews, cancel checks, likeness
   re-rolls, safety verdicts, stored pictures and done/failed event. Nothing of a job is shared but the
   denoising batch.
3. ``RenderBatcher``: the runner's render calls meet here. Calls whose requests share a batch key
   (engine/batch.batch_key) are joined into one ``render_batch``; the first to arrive leads and waits until
   the group is full (B), every gathered job has arrived (or finished early, e.g. its model file was missing),
   or T ms have passed. Each call gets back its own pictures or its own exception, so a bad LoRA file, a
   refused prompt or a cancel fails only its job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud.queues.base import JobQueue, Lease

log = logging.getLogger(__name__)

_POLL_S = 0.02


def gather_renders(
    queue: JobQueue,
    first: Lease,
    *,
    max_jobs: int,
    wait_s: float,
    lease_s: int,
    stop: Callable[[], bool] = lambda: False,
) -> list[Lease]:
    """``first`` and up to ``max_jobs - 1`` more render messages, taken within ``wait_s`` seconds."""
    leases = [first]
    deadline = time.monotonic() + wait_s
    while len(leases) < max_jobs and not stop():
        try:
            got = queue.receive(min(10, max_jobs - len(leases)), wait_s=0, lease_s=lease_s)
        except Exception:
            log.warning("gathering render jobs failed; going on with %d", len(leases), exc_info=True)
            break
        leases += got
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not got:
            time.sleep(min(_POLL_S, left))
    return leases


@dataclass
class _Call:
    member: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    share: float = 0.0  # seconds: the batch's time over its members


class RenderBatcher:
    """Joins concurrent render calls that share a batch key into one batched call (see the module doc)."""

    def __init__(self, max_size: int, wait_s: float) -> None:
        self.max_size = max(1, max_size)
        self.wait_s = max(0.0, wait_s)
        self._cond = threading.Condition()
        self._open: dict[Hashable, list[_Call]] = {}  # per key, the group still taking members
        self._jobs = 0  # gathered jobs in flight (``gathered`` / ``finished``)
        self._inside = 0  # calls inside ``submit``
        self.batches: list[int] = []
        """Sizes of the batches run so far (the newest last, at most 100 kept): for logs and tests."""

    def gathered(self, jobs: int) -> None:
        """``jobs`` more gathered jobs are in flight (counted before any starts, so none is missed); each
        calls ``finished`` when it is settled. A group's leader waits for the jobs in flight, no longer."""
        with self._cond:
            self._jobs += jobs

    def finished(self) -> None:
        with self._cond:
            self._jobs -= 1
            self._cond.notify_all()

    def submit(
        self, key: Hashable, member: Any, run: Callable[[Sequence[Any]], list[Any]]
    ) -> tuple[Any, float]:
        """``member``'s result from ``run(members)``, called once for the whole group it joined, and its share
        of the time that call took (the GPU time to charge the member)."""
        call = _Call(member)
        with self._cond:
            self._inside += 1
            group = self._open.get(key)
            leader = group is None or len(group) >= self.max_size
            if leader:
                group = self._open[key] = []
            assert group is not None
            group.append(call)
            self._cond.notify_all()
            if leader:
                deadline = time.monotonic() + self.wait_s
                while len(group) < self.max_size and self._inside < self._jobs:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._open.get(key) is group:
                    del self._open[key]
        try:
            if leader:
                self._run(group, run)
            else:
                call.done.wait()
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()
        return call.result, call.share

    def _run(self, group: list[_Call], run: Callable[[Sequence[Any]], list[Any]]) -> None:
        started = time.monotonic()
        try:
            results: list[Any] = run([c.member for c in group])
        except Exception as err:  # the batch as a whole failed (e.g. out of memory): each member hears it
            results = [err] * len(group)
        finally:
            self.batches = [*self.batches[-99:], len(group)]
        share = (time.monotonic() - started) / len(group)
        for c, result in zip(group, results, strict=True):
            c.result, c.share = result, share
            c.done.set()
        if len(group) > 1:
            log.info("rendered a mixed-member batch of %d jobs", len(group))
