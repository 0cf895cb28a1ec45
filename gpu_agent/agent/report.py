"""Events about one job, sent to the events queue: started, progress (throttled), checkpoint, done, failed,
preempted. Sending an event never takes the job down: a failure is logged and the job goes on."""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from cloud.messages import ErrorInfo, Event, EventKind, Progress, RenderJob, TrainJob, encode
from cloud.queues.base import JobQueue
from gpu_agent.engine.preview import PreviewPlan
from storage import keys
from storage.blobs.base import BlobStore

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


class Reporter:
    def __init__(
        self,
        events: JobQueue,
        blobs: BlobStore,
        job: TrainJob | RenderJob,
        *,
        agent_id: str,
        instance_type: str | None = None,
        progress_every_s: float = 5.0,
        preview_min_interval_s: float = 10.0,
    ) -> None:
        self.events = events
        self.blobs = blobs
        self.job = job
        self.job_kind = "train" if isinstance(job, TrainJob) else "render"
        self.agent_id = agent_id
        self.instance_type = instance_type
        self.progress_every_s = progress_every_s
        self._last_progress = float("-inf")
        self.preview_min_interval_s = preview_min_interval_s
        self._last_preview = float("-inf")
        self._started_at = time.monotonic()
        self._first_step: tuple[int, float] | None = None
        self._lock = threading.Lock()
        self.sent: list[Event] = []
        self._bar: Any = None  # a terminal progress bar, only when someone watches (stderr is a TTY)

    def event(self, kind: EventKind, **fields: object) -> Event:
        return Event(
            job_id=self.job.job_id,
            order_id=self.job.order_id,
            job_kind=self.job_kind,
            kind=kind,
            agent_id=self.agent_id,
            instance_type=self.instance_type,
            **fields,
        )

    def send(self, event: Event) -> Event:
        try:
            self.events.send(encode(event))
        except Exception:
            log.exception("could not send %s event for job %s", event.kind, event.job_id)
        with self._lock:
            self.sent.append(event)
        return event

    def emit(self, kind: EventKind, **fields: object) -> Event:
        return self.send(self.event(kind, **fields))

    def started(self, step: int = 0, total: int = 0) -> Event:
        self._first_step = (step, time.monotonic())
        return self.emit(EventKind.STARTED, progress=Progress(step=step, total=total))

    def _terminal(self, step: int, total: int, loss: float | None) -> None:
        if total <= 0 or not sys.stderr.isatty():
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                initial=step,
                desc=f"{self.job_kind} {self.job.job_id[:8]}",
                unit="step",
                leave=False,
            )
        self._bar.update(max(0, step - self._bar.n))
        if loss is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if step >= total:
            self._bar.close()
            self._bar = None

    def progress(
        self,
        step: int,
        total: int,
        loss: float | None = None,
        preview_jpeg: bytes | None = None,
        *,
        force: bool = False,
    ) -> Event | None:
        """A progress event, unless one went out less than ``progress_every_s`` ago."""
        self._terminal(step, total, loss)
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_every_s:
            return None
        self._last_progress = now
        preview_key = None
        if preview_jpeg:
            self._last_preview = now
            preview_key = keys.preview_key(self.job.user_id, self.job.job_id, step)
            try:
                self.blobs.put(preview_key, preview_jpeg, content_type="image/jpeg")
            except Exception:
                log.warning("could not store preview %s", preview_key, exc_info=True)
                preview_key = None
        return self.emit(
            EventKind.PROGRESS,
            progress=Progress(
                step=step,
                total=total,
                eta_s=self.eta(step, total, now),
                loss=_finite(loss),
                preview_key=preview_key,
            ),
        )

    def preview_due(self) -> bool:
        """True when a preview may go out now: the last one is ``preview_min_interval_s`` old (each preview is a
        message edit with an upload, and Discord allows a message only a few edits a minute)."""
        return time.monotonic() - self._last_preview >= self.preview_min_interval_s

    def preview_plan(self, every_steps: int = 0) -> PreviewPlan:
        """Previews for this job: each goes out with a progress event of its own (never dropped by the progress
        throttle, because ``preview_due`` already spaced them)."""

        def deliver(step: int, total: int, image: Image.Image) -> None:
            from gpu_agent.engine.preview import jpeg_bytes

            self.progress(step, total, preview_jpeg=jpeg_bytes(image), force=True)

        return PreviewPlan(deliver=deliver, due=self.preview_due, every_steps=max(1, every_steps))

    def eta(self, step: int, total: int, now: float | None = None) -> float | None:
        if self._first_step is None or total <= 0:
            return None
        first, at = self._first_step
        done = step - first
        if done <= 0:
            return None
        rate = ((now or time.monotonic()) - at) / done
        return round(max(0.0, (total - step) * rate), 1)

    def checkpoint(self, step: int, total: int) -> Event:
        return self.emit(EventKind.CHECKPOINT, progress=Progress(step=step, total=total))

    def failed(self, code: str, message: str, gpu_seconds: float | None = None) -> Event:
        return self.emit(
            EventKind.FAILED,
            error=ErrorInfo(code=code[:64], message=message[:500] or "The job failed."),
            gpu_seconds=gpu_seconds,
        )

    def preempted(self, step: int, total: int) -> Event:
        if self.job_kind == "train":
            text = f"Paused: the GPU was reclaimed — resuming from step {step} of {total} on another machine."
        else:
            text = "Paused: the GPU was reclaimed — another machine will pick your picture up and render it."
        return self.emit(
            EventKind.PREEMPTED,
            progress=Progress(step=step, total=total),
            error=ErrorInfo(code="preempted", message=text),
        )


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
