"""What the agent does with one TrainJob or RenderJob, from downloading inputs to uploading outputs.

A handler runs in the agent's worker thread and returns an Outcome; the agent loop (worker.py) then settles the
message: done → done-marker, done event, ack; preempted → preempted event, release; failed → failed event and ack
or dead-letter, or a release for a retry. Handlers write outputs only under the job's deterministic keys, so a
retry overwrites instead of duplicating, and they write nothing once the lease is lost.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cloud.messages import AugmentedSet, ImageSafety, LikenessScore, RenderJob, TrainJob
from cloud.queues.base import Lease
from gpu_agent.agent.cancellation import JobCancelled, StopCheck
from gpu_agent.agent.checkpoints import CheckpointSync
from gpu_agent.agent.class_images import ClassImageSync
from gpu_agent.agent.likeness import Judge, put_reference, reroll_seed
from gpu_agent.agent.lora_cache import LoraCache
from gpu_agent.agent.metrics import AgentMetrics
from gpu_agent.agent.photo_prep import PhotoPreparation
from gpu_agent.agent.report import Reporter
from gpu_agent.agent.runner import Interrupted, JobError, JobRunner, TrainRequest, is_out_of_memory
from gpu_agent.agent.safety import SafetyGate
from storage import keys
from storage.blobs.base import BlobNotFound, BlobStore
from storage.settings import Settings

log = logging.getLogger(__name__)

Result = Literal["done", "preempted", "lease_lost", "failed", "cancelled"]

OOM_MESSAGE = "The GPU ran out of memory on this job, even with memory-saving settings. Try a smaller size."


@dataclass
class Outcome:
    result: Result
    output_keys: list[str] = field(default_factory=list)  # every file stored
    model_key: str | None = None  # a training's LoRA
    render_keys: list[str] = field(default_factory=list)  # the pictures to deliver
    step: int = 0
    total: int = 0
    error: JobError | None = None
    gpu_seconds: float = 0.0
    likeness: list[LikenessScore] | None = None
    safety: list[ImageSafety] = field(default_factory=list)  # one verdict per stored picture
    augmented: AugmentedSet | None = None  # a training's small photo set, augmented


class JobContext:
    """One job in flight: its lease, its reporter, and the flag that stops it."""

    def __init__(self, lease: Lease, reporter: Reporter, workdir: Path) -> None:
        self.lease = lease
        self.reporter = reporter
        self.workdir = workdir
        self._stop = threading.Event()
        self.reason: Literal["drain", "lease_lost"] | None = None
        self.gpu_seconds = 0.0
        self.step = 0
        self.total = 0
        self.stop_check: StopCheck | None = None  # the order's cancel / the member's forget tombstone
        self.cancelled: str | None = None

    def halt(self, reason: Literal["drain", "lease_lost"]) -> None:
        if self.reason != "lease_lost":  # a lost lease wins: nothing may be written then
            self.reason = reason
        self._stop.set()

    def should_stop(self) -> bool:
        if not self._stop.is_set():
            self.poll_cancel()
        return self._stop.is_set()

    def poll_cancel(self, *, fresh: bool = False) -> bool:
        """Ask (cached unless ``fresh``) whether the order was cancelled or the member forgotten; stop if so."""
        reason = self.stop_check.check(fresh=fresh) if self.stop_check is not None else None
        if reason is not None and self.cancelled is None:
            self.cancelled = reason
            self._stop.set()
        return self.cancelled is not None

    def guard_upload(self) -> None:
        """Before every upload: a cancelled job or a forgotten member's job writes nothing more."""
        if self.poll_cancel(fresh=True):
            raise JobCancelled(self.cancelled)  # type: ignore[arg-type]

    @property
    def lease_lost(self) -> bool:
        return self.reason == "lease_lost"


class Handlers:
    def __init__(
        self, settings: Settings, runner: JobRunner, blobs: BlobStore, metrics: AgentMetrics
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.blobs = blobs
        self.metrics = metrics
        self.safety = SafetyGate.from_settings(settings)
        self.lora_cache = LoraCache(Path(settings.agent_work_dir) / "loras")

    # --- training ------------------------------------------------------------------------------------------

    def train(self, ctx: JobContext, job: TrainJob) -> Outcome:
        began = time.monotonic()
        downloaded = self._download_photos(ctx.workdir / "photos", job)
        # checked, augmented and described in a thread while the trainer loads the model (photo_prep.py)
        prep = PhotoPreparation(self.settings, job, downloaded, ctx.workdir).start()
        try:
            return self._train(ctx, job, prep, time.monotonic() - began)
        except Exception:
            # A refused set is what the member must hear, whatever else the training ran into meanwhile.
            refused = prep.refusal()
            if refused is not None:
                raise refused from None
            raise
        finally:
            prep.join()
            self.metrics.phases("train", {"photos_background": prep.seconds})

    def _train(self, ctx: JobContext, job: TrainJob, prep: PhotoPreparation, download_s: float) -> Outcome:
        total = job.params.steps
        ctx.total = total
        sync = CheckpointSync(
            self.blobs, keys.checkpoint_prefix(job.user_id, job.job_id), ctx.workdir / "checkpoints"
        )
        resumed = sync.download()
        ctx.step = resumed
        if resumed:
            log.info("job %s resumes from the checkpoint at step %d", job.job_id, resumed)
        # "started" once the photos passed the checks, as before they ran beside the model load: a refused set is
        # never reported started, and a job resumed elsewhere shows its pause until the new machine is under way
        prep.pictures.add_done_callback(
            lambda ready: ready.exception() is None and ctx.reporter.started(step=resumed, total=total)
        )
        shared = ClassImageSync(self.blobs, job, ctx.workdir / "class-images")
        if job.params.prior_preservation:
            shared.download()

        def progress(step: int, total_steps: int, loss: float | None = None) -> None:
            ctx.step = step
            if ctx.lease_lost:
                return
            if self._upload_checkpoint(ctx, sync):
                ctx.reporter.checkpoint(ctx.step, total_steps)
            ctx.reporter.progress(step, total_steps, loss, force=step == total_steps)

        every = self.settings.agent_preview_every_steps
        preview = ctx.reporter.preview_plan(every) if every else None

        def attempt(low_memory: bool) -> object:
            request = TrainRequest(
                job=job,
                pictures=prep.pictures,
                output_dir=ctx.workdir / "output",
                checkpoint_dir=sync.local_dir,
                checkpoint_every=self.settings.checkpoint_every_steps,
                low_memory=low_memory,
                class_image_dir=shared.folder if job.params.prior_preservation else None,
            )
            return self.runner.train(request, progress=progress, should_stop=ctx.should_stop, preview=preview)

        try:
            trained = self._with_oom_retry(ctx, attempt)
        except Interrupted as stop:
            ctx.step = max(stop.step, ctx.step)
            if job.params.prior_preservation and not ctx.lease_lost and not ctx.cancelled:
                shared.upload_new()  # the next agent need not render them again (a cancelled job uploads nothing)
            return self._interrupted(ctx, sync)
        if ctx.lease_lost:
            return Outcome("lease_lost", step=ctx.step, total=total)
        timings = dict(getattr(trained, "timings", {}))
        # on the critical path: the download and the trainer's wait for the prepared pictures
        timings["photos"] = download_s + timings.get("photos", 0.0)
        self.metrics.phases("train", timings)
        with self.metrics.phase("train", "upload"):
            prepared = prep.result()  # the reference was made while the model trained
            if job.params.prior_preservation:
                shared.upload_new()
            ctx.guard_upload()
            model_files = self._upload_model(job, trained, ctx.guard_upload)
            ctx.guard_upload()
            reference = put_reference(self.blobs, job, prepared.reference)
        judge = None if reference is None else Judge(reference, self.settings.likeness_retries)
        scores: list[LikenessScore] = []
        verdicts: list[ImageSafety] = []
        weights = Path(trained.weights_path)  # type: ignore[attr-defined]
        try:
            with self.metrics.phase("train", "first_renders"):
                renders = self._first_renders(ctx, job, weights, verdicts, judge, scores)
        except Interrupted:
            # The model is trained and stored; only its first pictures are missing. Hand the job on: the
            # next agent resumes from the final checkpoint, which is as good as done.
            return self._interrupted(ctx, sync)
        if ctx.lease_lost:
            return Outcome("lease_lost", step=ctx.step, total=total)
        return Outcome(
            "done",
            output_keys=model_files + renders,
            model_key=model_files[0],
            render_keys=renders,
            step=total,
            total=total,
            likeness=scores or None,
            safety=verdicts,
            augmented=prepared.augmented,
        )

    def _interrupted(self, ctx: JobContext, sync: CheckpointSync) -> Outcome:
        if ctx.lease_lost:
            return Outcome("lease_lost", step=ctx.step, total=ctx.total)
        # The engine saved a checkpoint before it stopped; it must reach the store before the message is released.
        self._upload_checkpoint(ctx, sync)
        if sync.uploaded:
            ctx.step = CheckpointSync.step_of(sync.uploaded)
        return Outcome("preempted", step=ctx.step, total=ctx.total)

    def _upload_checkpoint(self, ctx: JobContext, sync: CheckpointSync) -> bool:
        if sync.has_new() and ctx.poll_cancel(fresh=True):
            return False  # the engine sees should_stop() and stops; the agent deletes what was stored
        uploaded = sync.upload_if_new()
        if uploaded is None:
            return False
        step, seconds = uploaded
        ctx.step = step
        self.metrics.checkpoint_seconds.observe(seconds)
        log.info("checkpoint at step %d of job %s stored in %.2f s", step, ctx.reporter.job.job_id, seconds)
        return True

    def _download_photos(self, folder: Path, job: TrainJob) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        missing = 0
        for n, key in enumerate(job.photo_keys):
            try:
                data = self.blobs.get(key)
            except (BlobNotFound, ValueError):  # ValueError: a key the store refuses (InvalidKey)
                missing += 1
                continue
            suffix = (
                Path(key).suffix.lower()
                if Path(key).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
                else ".jpg"
            )
            path = folder / f"{n:02d}{suffix}"
            path.write_bytes(data)
            paths.append(path)
        if missing:
            raise JobError(
                "photos_missing",
                f"{missing} of your {len(job.photo_keys)} photos could not be found on the server "
                "(they may have expired). Please run /train again with your photos.",
            )
        return paths  # checked again by photo_prep, beside the model load

    def _upload_model(
        self, job: TrainJob, trained: object, guard: Callable[[], None] = lambda: None
    ) -> list[str]:
        """Store the LoRA and its meta; returns their keys, the LoRA's first."""
        weights = Path(trained.weights_path)  # type: ignore[attr-defined]
        meta = Path(trained.meta_path)  # type: ignore[attr-defined]
        model_key = keys.model_key(job.user_id, job.model_id)
        meta_key = keys.model_meta_key(job.user_id, job.model_id)
        with weights.open("rb") as fh:
            self.blobs.put(model_key, fh, content_type="application/octet-stream")
        guard()
        self.blobs.put(meta_key, meta.read_bytes(), content_type="application/json")
        return [model_key, meta_key]

    def _first_renders(
        self,
        ctx: JobContext,
        job: TrainJob,
        weights: Path,
        verdicts: list[ImageSafety],
        judge: Judge | None = None,
        scores: list[LikenessScore] | None = None,
    ) -> list[str]:
        outputs: list[str] = []
        n = 0
        size = self.settings.render_size // 8 * 8
        for spec in job.renders:
            render_job = RenderJob(
                job_id=job.job_id,
                order_id=job.order_id,
                user_id=job.user_id,
                model_id=job.model_id,
                base_model=job.base_model,
                subject=f"{job.subject_token} {job.class_word}",
                prompt=spec.prompt,
                negative_prompt=spec.negative_prompt,
                seed=spec.seed,
                count=spec.count,
                width=size,
                height=size,
                steps=self.settings.render_steps,
            )
            rendered = self._with_oom_retry(
                ctx,
                lambda low, rj=render_job: self.runner.render(
                    rj, [weights], None, progress=lambda *_: None, should_stop=ctx.should_stop, low_memory=low
                ),
            )
            pngs, judged = self._judged(ctx, judge, render_job, [weights], None, list(rendered.pngs))  # type: ignore[attr-defined]
            if judged and scores is not None:
                scores.extend(judged)
            for i, png in enumerate(pngs):
                if ctx.lease_lost:
                    return outputs
                ctx.guard_upload()
                key = keys.render_key(job.user_id, job.job_id, n)
                verdicts.append(self._checked(key, png, rendered, i))
                self.blobs.put(key, png, content_type="image/png")
                outputs.append(key)
                n += 1
        return outputs

    # --- rendering -----------------------------------------------------------------------------------------

    def render(self, ctx: JobContext, job: RenderJob) -> Outcome:
        if job.mode == "group":
            from gpu_agent.agent.group_job import render_group

            return render_group(self, ctx, job)
        if job.mode == "backdrop":
            from gpu_agent.agent.backdrop_job import render_backdrop

            return render_backdrop(self, ctx, job)
        ctx.total = job.steps
        loras = [self._fetch_lora(key) for key in job.model_keys]
        source = None
        if job.source_key:
            try:
                source = self.blobs.get(job.source_key)
            except (BlobNotFound, ValueError):
                raise JobError("source_missing", "The picture this render starts from is gone.") from None
        ctx.reporter.started(step=0, total=job.steps)

        def progress(step: int, total: int, loss: float | None = None) -> None:
            ctx.step, ctx.total = step, total
            ctx.reporter.progress(step, total)

        judge = Judge.for_render(self.blobs, job, self.settings.likeness_retries)
        try:
            rendered = self._with_oom_retry(
                ctx,
                lambda low: self.runner.render(
                    job,
                    loras,
                    source,
                    progress=progress,
                    should_stop=ctx.should_stop,
                    low_memory=low,
                    preview=ctx.reporter.preview_plan() if self.settings.agent_preview_every_steps else None,
                ),
            )
            pngs, scores = self._judged(ctx, judge, job, loras, source, list(rendered.pngs))  # type: ignore[attr-defined]
        except Interrupted:
            return Outcome("lease_lost" if ctx.lease_lost else "preempted", step=ctx.step, total=ctx.total)
        return self.store_pictures(ctx, job, pngs, rendered, scores)

    def store_pictures(
        self,
        ctx: JobContext,
        job: RenderJob,
        pngs: list[bytes],
        rendered: object,
        scores: list[LikenessScore] | None,
    ) -> Outcome:
        """Each picture safety-checked, then stored under its render key (nothing once the lease is lost or the
        order cancelled); the done outcome names them."""
        outputs, verdicts = [], []
        for n, png in enumerate(pngs):
            if ctx.lease_lost:
                return Outcome("lease_lost", step=ctx.step, total=ctx.total)
            ctx.guard_upload()
            key = keys.render_key(job.user_id, job.job_id, n)
            verdicts.append(self._checked(key, png, rendered, n))
            self.blobs.put(key, png, content_type="image/png")
            outputs.append(key)
        return Outcome(
            "done",
            output_keys=outputs,
            render_keys=outputs,
            step=ctx.total,
            total=ctx.total,
            likeness=scores,
            safety=verdicts,
        )

    def _judged(
        self,
        ctx: JobContext,
        judge: Judge | None,
        job: RenderJob,
        loras: list[Path],
        source: bytes | None,
        pngs: list[bytes],
    ) -> tuple[list[bytes], list[LikenessScore] | None]:
        """The pictures to deliver and their likeness: weak ones re-rendered one at a time with new seeds."""
        if judge is None:
            return pngs, None

        def rerender(index: int, attempt: int) -> bytes:
            one = job.model_copy(update={"count": 1, "seed": reroll_seed(job, index, attempt)})
            again = self._with_oom_retry(
                ctx,
                lambda low: self.runner.render(
                    one, loras, source, progress=lambda *_: None, should_stop=ctx.should_stop, low_memory=low
                ),
            )
            return again.pngs[0]  # type: ignore[attr-defined]

        return judge.improve(pngs, rerender, seed_of=lambda index, attempt: reroll_seed(job, index, attempt))

    def _checked(self, key: str, png: bytes, rendered: object, n: int) -> ImageSafety:
        """The safety verdict of picture ``n`` of a render, taken before it is stored (agent/safety.py)."""
        flagged = list(getattr(rendered, "flagged", None) or [])
        return self.safety.verdict(key, png, withheld=flagged[n] if n < len(flagged) else None)

    def _fetch_lora(self, key: str) -> Path:
        """The LoRA at ``key`` as a local file. The file is kept between jobs and rewritten only when its bytes
        change, so the renderer recognises a member's adapter that is still loaded."""
        try:
            data = self.blobs.get(key)
        except (BlobNotFound, ValueError):
            raise JobError(
                "model_missing",
                "Your trained model could not be found; it may have been "
                "deleted. Train a new one with /train.",
            ) from None
        return self.lora_cache.path_for(key, data)

    # --- shared --------------------------------------------------------------------------------------------

    def _with_oom_retry(self, ctx: JobContext, call: object) -> object:
        """Run ``call(low_memory)``; on a GPU out-of-memory error, once more with memory-saving settings."""
        started = time.monotonic()
        result: object = None
        try:
            result = call(False)  # type: ignore[operator]
            return result
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            log.warning(
                "job %s ran out of GPU memory; retrying once with memory-saving settings",
                ctx.reporter.job.job_id,
            )
            _free_gpu_memory()
        finally:
            ctx.gpu_seconds += _gpu_share(result, time.monotonic() - started)
        started = time.monotonic()
        try:
            result = call(True)  # type: ignore[operator]
            return result
        except Exception as err:
            if is_out_of_memory(err):
                raise JobError("out_of_memory", OOM_MESSAGE) from err
            raise
        finally:
            ctx.gpu_seconds += _gpu_share(result, time.monotonic() - started)


def _gpu_share(result: object, elapsed: float) -> float:
    """The GPU time a runner call costs its job: its share of a mixed-member batch when it was in one
    (RenderOutcome.gpu_seconds), else the call's time."""
    share = getattr(result, "gpu_seconds", None)
    return elapsed if share is None else float(share)


def _free_gpu_memory() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def clean_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
