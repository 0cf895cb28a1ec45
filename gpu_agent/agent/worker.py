"""The Agent: takes jobs from the train and render queues one at a time and settles each message.

Per job: lease kept alive by a LeaseKeeper thread; the engine works in a worker thread while this thread watches
for a drain (spot notice, SIGTERM, stop) and the lease; then the message is settled in a fixed order so that no
order is lost or delivered twice: outputs → done-marker → done event → ack (last).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from cloud.messages import (
    ErrorInfo,
    Event,
    EventKind,
    MessageError,
    Progress,
    RenderJob,
    TrainJob,
    decode,
    encode,
)
from cloud.queues.base import JobQueue, Lease, LeaseExpired
from gpu_agent.agent.cancellation import MESSAGES, JobCancelled, StopCheck, job_prefixes
from gpu_agent.agent.jobs import Handlers, JobContext, Outcome, clean_workdir
from gpu_agent.agent.lease import LeaseKeeper
from gpu_agent.agent.metrics import AgentMetrics, HealthServer
from gpu_agent.agent.protection import ScaleInProtection
from gpu_agent.agent.report import Reporter
from gpu_agent.agent.runner import JobError, JobRunner
from gpu_agent.agent.spot import Drain, SpotWatcher, imds_url_for
from gpu_agent.agent.stack import preloading
from storage import keys
from storage.blobs.base import BlobNotFound, BlobStore
from storage.contracts import is_id
from storage.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["train", "render"]
INTERNAL_MESSAGE = "Something went wrong on the GPU machine while working on this. Please try again."
BAD_JOB_MESSAGE = "The GPU machine could not read this job. Please try again."
_WATCH_S = 0.2


class Agent:
    """One GPU agent. ``run(stop_event)`` blocks until the stop event is set or a drain finishes."""

    def __init__(
        self,
        settings: Settings,
        *,
        runner: JobRunner | None = None,
        queues: Any | None = None,
        blobs: BlobStore | None = None,
        drain: Drain | None = None,
    ) -> None:
        if queues is None:
            from cloud.queues import open_queues

            queues = open_queues(settings)
        if blobs is None:
            from storage.blobs import open_blob_store

            blobs = open_blob_store(settings)
        if runner is None:
            from gpu_agent.agent.engine_runner import EngineRunner

            runner = EngineRunner(settings)
        self.settings = settings
        self.queues = queues
        self.blobs = blobs
        self.runner = runner
        self.drain = drain or Drain()
        self.metrics = AgentMetrics()
        self.agent_id = settings.agent_id or f"{socket.gethostname()}-{os.getpid()}"
        self.handlers = Handlers(settings, runner, blobs, self.metrics)
        self.work_dir = Path(settings.agent_work_dir)
        self.protection = ScaleInProtection(settings)
        self.spot = SpotWatcher(
            imds_url_for(settings),
            self.drain,
            poll_s=settings.imds_poll_s,
            on_notice=self.metrics.spot_interruptions.inc,
        )
        self.health: HealthServer | None = None
        self.state = "starting"
        self.running: dict[str, str] = {}
        """Job id -> kind of every job in hand: one, or the members of a mixed-member render batch."""
        self._running_lock = threading.Lock()
        self._turn = 0
        self._cache_checked_at = float("-inf")
        self.lora_check_s = 60.0  # how often an idle agent drops local LoRA copies whose blob was deleted
        # One engine thread per job handled side by side (gathered renders: agent/batching).
        self._executor = ThreadPoolExecutor(
            max_workers=settings.render_batch_max, thread_name_prefix="engine"
        )
        lease_s = settings.agent_lease_s
        # The heartbeat must beat well inside the lease even when misconfigured.
        self.heartbeat_s = min(float(settings.agent_heartbeat_s), lease_s / 2)

    # --- life -------------------------------------------------------------------------------------------------

    @property
    def metrics_port(self) -> int | None:
        return self.health.port if self.health else None

    def start_services(self) -> None:
        if self.health is None:
            self.health = HealthServer(
                self.metrics, self._health, self.settings.agent_metrics_host, self.settings.agent_metrics_port
            ).start()
            log.info("agent %s: /healthz and /metrics on port %d", self.agent_id, self.health.port)
        self.spot.start()

    def run(
        self, stop_event: threading.Event | None = None, *, once_wait_s: float | None = None
    ) -> str | None:
        """Take jobs until stopped. With ``once_wait_s`` (``photogen agent --once``, an AWS Batch job): wait that
        long for one job, settle it and return how it ended (``done``, ``failed``, ``preempted``, ``retry`` …),
        or None when none came."""
        stop_event = stop_event or threading.Event()
        self.start_services()
        self.state = "idle"
        waited_since = time.monotonic()
        try:
            while not self.drain.requested:
                if stop_event.is_set():
                    self.drain.request("stopped")
                    break
                got = self._receive()
                if got is None:
                    self.protection.set(False)  # idle: the autoscaler may take this instance back
                    self._drop_stale_loras()
                    if once_wait_s is not None and time.monotonic() - waited_since >= once_wait_s:
                        log.info("agent %s: no job within %.0f s; nothing to do", self.agent_id, once_wait_s)
                        return None
                    continue
                self.protection.set(True)
                if got[0] == "render" and once_wait_s is None:
                    result = self._handle_renders(got[1], stop_event)
                else:
                    result = self._handle(*got, stop_event=stop_event)
                if once_wait_s is not None:
                    return result
            return "preempted" if once_wait_s is not None else None
        finally:
            self.protection.set(False)
            self.state = "stopped"
            self.metrics.draining.set(1)
            self.spot.stop()
            if self.health is not None:
                self.health.stop()
            self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("agent %s stopped (%s)", self.agent_id, self.drain.reason)

    def _health(self) -> tuple[bool, dict[str, Any]]:
        ok = not self.drain.requested and self.state != "stopped"
        return ok, {
            "status": "ok" if ok else "draining",
            "agent_id": self.agent_id,
            "state": self.state,
            "job_id": next(iter(self.running), None),
            "job_ids": list(self.running),
            "drain_reason": self.drain.reason,
            "engine_preloading": preloading(),
        }

    # --- receiving --------------------------------------------------------------------------------------------

    def _queue(self, kind: Kind) -> JobQueue:
        return self.queues.train if kind == "train" else self.queues.render

    def _order(self) -> list[Kind]:
        kinds: list[Kind] = list(dict.fromkeys(self.settings.agent_kinds))
        # Renders first while the render pipeline is warm: a member is waiting for a picture.
        if self.runner.warm and "render" in kinds:
            kinds.remove("render")
            kinds.insert(0, "render")
        return kinds

    def _receive(self) -> tuple[Kind, Lease] | None:
        order = self._order()
        if not order:
            raise ValueError("AGENT_KINDS is empty: this agent would serve no queue")
        try:
            for kind in order:
                leases = self._queue(kind).receive(1, wait_s=0, lease_s=self.settings.agent_lease_s)
                if leases:
                    return kind, leases[0]
            # Nothing anywhere: long-poll one queue per turn, alternating, so neither waits forever.
            kind = order[self._turn % len(order)]
            self._turn += 1
            leases = self._queue(kind).receive(
                1, wait_s=self.settings.agent_poll_wait_s, lease_s=self.settings.agent_lease_s
            )
        except Exception:
            log.exception("receiving from the queues failed; retrying in 5 s")
            self.drain.wait(5)
            return None
        return (kind, leases[0]) if leases else None

    # --- gathered renders (mixed-member batches) ---------------------------------------------------------------

    def _handle_renders(self, first: Lease, stop_event: threading.Event) -> str:
        """The render ``first`` and the render jobs gathered with it (agent/batching), each handled and settled
        on its own, side by side, so that the runner can denoise compatible ones in one batch; how the
        first ended."""
        from gpu_agent.agent.batching import gather_renders

        batcher = getattr(self.runner, "batcher", None)
        if batcher is None or self.drain.requested:
            return self._handle("render", first, stop_event=stop_event)
        leases = gather_renders(
            self.queues.render,
            first,
            max_jobs=batcher.max_size,
            wait_s=batcher.wait_s,
            lease_s=self.settings.agent_lease_s,
            stop=lambda: self.drain.requested,
        )
        if len(leases) == 1:
            return self._handle("render", first, stop_event=stop_event)
        results: list[str | BaseException] = ["retry"] * len(leases)

        def handle(n: int, lease: Lease) -> None:
            try:
                results[n] = self._handle("render", lease, stop_event=stop_event)
            except BaseException as err:  # re-raised below, as a job handled alone would raise it
                results[n] = err
            finally:
                batcher.finished()

        threads = [
            threading.Thread(target=handle, args=(n, lease), name=f"render-{n}")
            for n, lease in enumerate(leases)
        ]
        batcher.gathered(len(threads))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return str(results[0])

    # --- one job ----------------------------------------------------------------------------------------------

    def _handle(self, kind: Kind, lease: Lease, *, stop_event: threading.Event) -> str:
        """Work on one message and settle it; how it ended: done, failed, retry, preempted, lease_lost,
        cancelled, malformed or skipped (done before / dropped)."""
        queue = self._queue(kind)
        if self.drain.requested:
            self._release(queue, lease, 0)
            return "preempted"
        try:
            job: TrainJob | RenderJob = (
                decode(lease.body, TrainJob) if kind == "train" else decode(lease.body, RenderJob)
            )
        except MessageError as err:
            self._malformed(kind, queue, lease, str(err))
            return "malformed"
        if lease.sent_at:
            self.metrics.queue_wait.labels(kind).observe(max(0.0, time.time() - lease.sent_at))
        if self._already_done(kind, queue, lease, job):
            return "skipped"
        stop_check = StopCheck(self.blobs, job)
        if self._drop_cancelled(kind, queue, lease, job, stop_check):
            return "skipped"
        started = time.monotonic()
        reporter = Reporter(
            self.queues.events,
            self.blobs,
            job,
            agent_id=self.agent_id,
            instance_type=self.spot.instance_type,
            progress_every_s=self.settings.agent_progress_every_s,
            preview_min_interval_s=self.settings.agent_preview_min_interval_s,
        )
        workdir = self.work_dir / "jobs" / job.job_id
        clean_workdir(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = JobContext(lease, reporter, workdir)
        ctx.stop_check = stop_check
        self._job_started(kind, job.job_id)
        log.info("job %s (%s, delivery %d) started", job.job_id, kind, lease.receive_count)
        try:
            with LeaseKeeper(
                queue,
                lease,
                lease_s=self.settings.agent_lease_s,
                heartbeat_s=self.heartbeat_s,
                on_lost=lambda: ctx.halt("lease_lost"),
            ):
                outcome = self._work(kind, ctx, job, stop_event)
            return self._settle(kind, queue, lease, job, ctx, outcome)
        finally:
            self.metrics.job_seconds.labels(kind).observe(time.monotonic() - started)
            self.metrics.gpu_seconds.labels(kind).inc(ctx.gpu_seconds)
            self._job_ended(job.job_id)
            clean_workdir(workdir)

    def _job_started(self, kind: Kind, job_id: str) -> None:
        with self._running_lock:
            self.running[job_id] = kind
            self.state = kind
            self.metrics.busy.set(1)

    def _job_ended(self, job_id: str) -> None:
        """Idle (and not busy) only when the last job in hand ends: a batch's members end one by one."""
        with self._running_lock:
            self.running.pop(job_id, None)
            if not self.running:
                self.state = "idle"
                self.metrics.busy.set(0)

    def _work(
        self, kind: Kind, ctx: JobContext, job: TrainJob | RenderJob, stop_event: threading.Event
    ) -> Outcome:
        handler = self.handlers.train if kind == "train" else self.handlers.render
        future: Future[Outcome] = self._executor.submit(handler, ctx, job)  # type: ignore[arg-type]
        while True:
            try:
                return self._outcome(future, ctx)
            except TimeoutError:
                pass
            ctx.poll_cancel()  # cached: a cancel or forget stops the engine at its next step
            if stop_event.is_set():
                self.drain.request("stopped")
            # Training checkpoints at once; a render may finish if it can inside the drain budget.
            past_budget = kind == "train" or self.drain.elapsed() >= self.settings.agent_drain_s
            if self.drain.requested and not ctx.should_stop() and past_budget:
                log.warning("stopping job %s: %s", job.job_id, self.drain.reason)
                ctx.halt("drain")

    @staticmethod
    def _outcome(future: Future[Outcome], ctx: JobContext) -> Outcome:
        try:
            return future.result(timeout=_WATCH_S)
        except TimeoutError:
            raise
        except JobCancelled:
            return Outcome("cancelled", step=ctx.step, total=ctx.total)
        except JobError as err:
            return Outcome("failed", error=err, step=ctx.step, total=ctx.total)
        except Exception as err:
            log.error("job %s failed", ctx.reporter.job.job_id, exc_info=err)
            return Outcome(
                "failed",
                error=JobError("internal", INTERNAL_MESSAGE, permanent=False),
                step=ctx.step,
                total=ctx.total,
            )

    # --- settling the message -----------------------------------------------------------------------------------

    def _settle(
        self,
        kind: Kind,
        queue: JobQueue,
        lease: Lease,
        job: TrainJob | RenderJob,
        ctx: JobContext,
        outcome: Outcome,
    ) -> str:
        gpu = round(ctx.gpu_seconds, 3)
        if outcome.result == "lease_lost" or ctx.lease_lost:
            # Another agent owns the message now: no result, no event, no ack.
            log.warning(
                "job %s: lease lost at step %d; left to the agent that holds it", job.job_id, ctx.step
            )
            self.metrics.jobs.labels(kind, "lease_lost").inc()
            return "lease_lost"
        if outcome.result == "cancelled" or ctx.poll_cancel(fresh=True):
            self._settle_cancelled(kind, queue, lease, job, ctx)
            return "cancelled"
        if outcome.result == "done":
            # The done event carries the last step too, so the member's progress bar ends at 100 %.
            finished = Progress(step=outcome.total, total=outcome.total) if outcome.total > 0 else None
            done = ctx.reporter.event(
                EventKind.DONE,
                output_keys=outcome.output_keys,
                model_key=outcome.model_key,
                render_keys=outcome.render_keys,
                gpu_seconds=gpu,
                progress=finished,
                likeness=outcome.likeness,
                safety=outcome.safety,
                augmented=outcome.augmented,
            )
            self._write_marker(job, done, sent=False)
            ctx.reporter.send(done)
            self._write_marker(job, done, sent=True)
            self._ack(queue, lease, job.job_id)
            if kind == "train":
                self._forget_checkpoints(job)
            self.metrics.jobs.labels(kind, "done").inc()
            log.info("job %s done: %s", job.job_id, ", ".join(outcome.output_keys))
            return "done"
        if outcome.result == "preempted":
            ctx.reporter.preempted(outcome.step, outcome.total)
            self._release(queue, lease, 0)
            self.metrics.jobs.labels(kind, "preempted").inc()
            log.warning("job %s released at step %d (%s)", job.job_id, outcome.step, self.drain.reason)
            return "preempted"
        error = outcome.error or JobError("internal", INTERNAL_MESSAGE, permanent=False)
        last_try = lease.receive_count >= getattr(queue, "max_receives", self.settings.queue_max_receives)
        if error.permanent:
            log.warning("job %s failed for good (%s): %s", job.job_id, error.code, error.message)
            ctx.reporter.failed(error.code, error.message, gpu_seconds=gpu)
            self._ack(queue, lease, job.job_id)
            self.metrics.jobs.labels(kind, "failed").inc()
        elif last_try:
            # A poison job: it failed on every delivery. Tell the member, keep the message for a look.
            log.warning("job %s failed on its last delivery (%s): %s", job.job_id, error.code, error.message)
            ctx.reporter.failed(error.code, error.message, gpu_seconds=gpu)
            self._dead_letter(queue, lease, f"failed {lease.receive_count} times: {error.code}")
            self.metrics.jobs.labels(kind, "failed").inc()
        else:
            self._release(queue, lease, self.settings.agent_retry_delay_s)
            self.metrics.jobs.labels(kind, "retry").inc()
            log.warning(
                "job %s failed on delivery %d (%s); released for a retry",
                job.job_id,
                lease.receive_count,
                error.code,
            )
            return "retry"
        return "failed"

    def _already_done(self, kind: Kind, queue: JobQueue, lease: Lease, job: TrainJob | RenderJob) -> bool:
        marker_key = keys.done_marker_key(job.user_id, job.job_id)
        try:
            marker = json.loads(self.blobs.get(marker_key))
        except BlobNotFound:
            return False
        except Exception:
            log.warning("done-marker %s unreadable; redoing the job", marker_key, exc_info=True)
            return False
        if not marker.get("event_sent"):
            # The agent before us stopped between the marker and the event: send the very same event (same
            # event_id), which the bot applies once even if it did arrive.
            try:
                done = decode(json.dumps(marker["event"]), Event)
                self.queues.events.send(encode(done))
                self._write_marker(job, done, sent=True)
            except Exception:
                log.exception("could not resend the done event of job %s", job.job_id)
        log.info("job %s already done; acknowledging the duplicate delivery", job.job_id)
        self._ack(queue, lease, job.job_id)
        self.metrics.jobs.labels(kind, "duplicate").inc()
        return True

    def _write_marker(self, job: TrainJob | RenderJob, done: Event, *, sent: bool) -> None:
        body = {
            "job_id": job.job_id,
            "agent_id": self.agent_id,
            "event_sent": sent,
            "event": json.loads(encode(done)),
        }
        self.blobs.put(
            keys.done_marker_key(job.user_id, job.job_id),
            json.dumps(body).encode(),
            content_type="application/json",
        )

    def _forget_checkpoints(self, job: TrainJob | RenderJob) -> None:
        try:
            self.blobs.delete_prefix(keys.checkpoint_prefix(job.user_id, job.job_id))
        except Exception:
            log.warning("could not delete the checkpoints of job %s", job.job_id, exc_info=True)

    # --- cancelled orders, forgotten members -------------------------------------------------------------------

    def _drop_cancelled(
        self, kind: Kind, queue: JobQueue, lease: Lease, job: TrainJob | RenderJob, stop_check: StopCheck
    ) -> bool:
        """A job whose order was cancelled, or whose member was forgotten, while it waited in the queue (or
        the dead-letter queue, redriven): acknowledged without any work."""
        reason = stop_check.check(fresh=True)
        if reason is None:
            return False
        reporter = Reporter(
            self.queues.events, self.blobs, job, agent_id=self.agent_id, instance_type=self.spot.instance_type
        )
        self._purge(job, reason)
        reporter.failed(reason, MESSAGES[reason], gpu_seconds=0.0)
        self._ack(queue, lease, job.job_id)
        self.metrics.jobs.labels(kind, "cancelled").inc()
        log.info("job %s dropped on receipt: %s", job.job_id, reason)
        return True

    def _settle_cancelled(
        self, kind: Kind, queue: JobQueue, lease: Lease, job: TrainJob | RenderJob, ctx: JobContext
    ) -> None:
        """Stopped because its order was cancelled or its member forgotten: delete what it stored, tell the
        bot (a cancelled order stays cancelled there, refunded once), acknowledge: never retried."""
        reason = ctx.cancelled or "cancelled"
        self._purge(job, reason)
        ctx.reporter.failed(reason, MESSAGES[reason], gpu_seconds=round(ctx.gpu_seconds, 3))
        self._ack(queue, lease, job.job_id)
        self.metrics.jobs.labels(kind, "cancelled").inc()
        log.warning("job %s stopped at step %d: %s", job.job_id, ctx.step, reason)

    def _purge(self, job: TrainJob | RenderJob, reason: str) -> None:
        """Delete what the job stored and, for a forgotten member, everything of theirs here and there."""
        prefixes = [keys.user_prefix(job.user_id)] if reason == "forgotten" else job_prefixes(job)
        try:
            for prefix in prefixes:
                self.blobs.delete_prefix(prefix)
        except Exception:
            log.warning(
                "could not delete the outputs of job %s (the bot's re-sweep will)", job.job_id, exc_info=True
            )
        if reason == "forgotten":
            self._evict(self.handlers.lora_cache.purge_member(job.user_id))

    def _drop_stale_loras(self) -> None:
        if time.monotonic() - self._cache_checked_at < self.lora_check_s:
            return
        self._cache_checked_at = time.monotonic()
        try:
            dropped = self.handlers.lora_cache.drop_stale(self.blobs)
        except Exception:
            log.warning("could not check the local LoRA copies", exc_info=True)
            return
        if dropped:
            log.info("dropped %d local LoRA copies whose model was deleted", len(dropped))
            self._evict(dropped)

    def _evict(self, lora_keys: list[str]) -> None:
        """Unload those LoRAs from the renderer too (a runner without resident adapters has no evict_models)."""
        model_ids = [m for m in (keys.model_of(k) for k in lora_keys) if m]
        evict = getattr(self.runner, "evict_models", None)
        if model_ids and evict is not None:
            evict(model_ids)

    def _malformed(self, kind: Kind, queue: JobQueue, lease: Lease, reason: str) -> None:
        log.warning("dead-lettering a malformed %s message %s: %s", kind, lease.message_id, reason)
        self._dead_letter(queue, lease, reason)
        self.metrics.jobs.labels(kind, "malformed").inc()
        ids = _ids_of(lease.body)
        if ids is None:
            return  # nothing names the order: the dead-letter queue and the log are all there is
        try:
            event = Event(
                job_id=ids[0],
                order_id=ids[1],
                job_kind=kind,
                kind="failed",
                agent_id=self.agent_id,
                error=ErrorInfo(code="bad_job", message=BAD_JOB_MESSAGE),
            )
            self.queues.events.send(encode(event))
        except Exception:
            log.exception("could not send the failed event of malformed message %s", lease.message_id)

    def _ack(self, queue: JobQueue, lease: Lease, job_id: str) -> None:
        try:
            queue.ack(lease)
        except LeaseExpired:
            # The lease ran out just before: the message comes back, finds the done-marker and is acked then.
            log.warning("ack of job %s came after its lease ran out; the redelivery will be acked", job_id)

    def _release(self, queue: JobQueue, lease: Lease, delay_s: int) -> None:
        try:
            queue.release(lease, delay_s)
        except LeaseExpired:
            log.info("release of message %s: lease already gone", lease.message_id)

    def _dead_letter(self, queue: JobQueue, lease: Lease, reason: str) -> None:
        try:
            queue.dead_letter(lease, reason[:500])
        except LeaseExpired:
            log.warning("dead-letter of message %s: lease already gone", lease.message_id)


def _ids_of(body: str) -> tuple[str, str] | None:
    """job_id and order_id of a body that failed to parse as a job, when it names them validly."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    job_id, order_id = data.get("job_id"), data.get("order_id")
    if isinstance(job_id, str) and isinstance(order_id, str) and is_id(job_id) and is_id(order_id):
        return job_id, order_id
    return None
