"""The real JobRunner: the diffusers engine (gpu_agent.engine). This is the only agent module that imports torch.

It keeps one Renderer (one base model loaded, members' LoRAs swapped) between jobs, which is what makes the agent
"warm" for renders. Training loads its own copy of the base model for the run and frees it afterwards.
"""

from __future__ import annotations

import io
import logging
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationError

from cloud.messages import RenderJob, TrainJob
from gpu_agent.agent.batching import RenderBatcher
from gpu_agent.agent.runner import (
    Interrupted,
    JobError,
    RenderOutcome,
    ShouldStop,
    StepProgress,
    TrainOutcome,
    TrainRequest,
)
from gpu_agent.agent.stack import wait_for_preload
from storage import keys
from storage.settings import Settings

if TYPE_CHECKING:
    import torch

    from gpu_agent.engine.batch import BatchKey
    from gpu_agent.engine.preview import PreviewPlan
    from gpu_agent.engine.render import Progress, Renderer
    from gpu_agent.engine.render_types import LoraRef, RenderedImage, RenderRequest
    from gpu_agent.engine.training import TrainConfig

log = logging.getLogger(__name__)


class EngineRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._renderer: Renderer | None = None  # loaded on the first render
        self._loading = threading.Lock()  # gathered jobs call render side by side (agent/batching)
        self.batcher: RenderBatcher | None = (
            RenderBatcher(settings.render_batch_max, settings.render_batch_wait_ms / 1000)
            if settings.render_batch_max > 1
            else None
        )
        """Joins compatible renders into mixed-member batches; None when RENDER_BATCH_MAX is 1."""

    @property
    def warm(self) -> bool:
        return self._renderer is not None

    # --- training ------------------------------------------------------------------------------------------

    def train(
        self,
        request: TrainRequest,
        *,
        progress: StepProgress,
        should_stop: ShouldStop,
        preview: PreviewPlan | None = None,
    ) -> TrainOutcome:
        wait_for_preload()
        from gpu_agent.engine.models import BaseModelError
        from gpu_agent.engine.training import (
            CheckpointError,
            TrainingInputError,
            TrainingInterrupted,
            train_lora,
        )

        job = request.job
        try:
            config = train_config(
                job, checkpoint_every=request.checkpoint_every, low_memory=request.low_memory
            )
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise JobError(
                "bad_job", f"The training settings were refused: {where}: {first['msg']}"[:500]
            ) from None
        photos = _opened(request.pictures)  # the trainer loads the model meanwhile

        def on_step(step: int, total: int, loss: float, _eta: float) -> None:
            progress(step, total, loss)

        def run() -> TrainOutcome:
            artifact = train_lora(
                config,
                photos,
                output_dir=request.output_dir,
                progress=on_step,
                checkpoint_dir=request.checkpoint_dir,
                should_stop=should_stop,
                device=self.settings.device,
                cache_dir=self.settings.model_cache_dir,
                preview=preview,
                class_image_dir=request.class_image_dir,
            )
            return TrainOutcome(
                weights_path=artifact.weights_path,
                meta_path=artifact.meta_path,
                steps=artifact.steps,
                resumed_from=int(artifact.meta.get("resumed_from_step") or 0),
                meta=artifact.meta,
                timings=artifact.timings,
            )

        try:
            try:
                return run()
            except CheckpointError as err:
                # A checkpoint of another configuration (an earlier attempt with other memory settings, a changed
                # deployment): slower to start over than to resume, but correct.
                log.warning("job %s: cannot resume (%s); training from the start", job.job_id, err)
                shutil.rmtree(request.checkpoint_dir, ignore_errors=True)
                return run()
        except TrainingInterrupted as stop:
            raise Interrupted(stop.step) from None
        except TrainingInputError as err:
            raise JobError("photos_rejected", f"Your photos cannot be trained on: {err}") from None
        except BaseModelError as err:
            raise _base_model_error(err) from None

    # --- rendering -----------------------------------------------------------------------------------------

    def renderer(self, base_model: str) -> Renderer:
        from gpu_agent.engine.face_detail import FaceDetailConfig
        from gpu_agent.engine.render import Renderer

        with self._loading:
            if self._renderer is None or self._renderer.base_model != base_model:
                self._renderer = None  # free the old base before loading another
                self._renderer = Renderer(
                    base_model,
                    device=_device(self.settings.device),
                    cache_dir=self.settings.model_cache_dir,
                    max_resident=self.settings.render_resident_loras,
                    max_pixels=self.settings.render_max_pixels,
                    face_detail=FaceDetailConfig.from_settings(self.settings),
                    upscaler_model=self.settings.upscaler_model,
                    upscale_refine=self.settings.upscale_refine,
                )
            return self._renderer

    def evict_models(self, model_ids: list[str]) -> None:
        """Unload these models' adapters from the warm renderer (deleted models, forgotten members)."""
        if self._renderer is not None:
            for model_id in model_ids:
                self._renderer.evict(model_id)

    def render(
        self,
        job: RenderJob,
        loras: list[Path],
        source: bytes | None,
        *,
        progress: StepProgress,
        should_stop: ShouldStop,
        low_memory: bool = False,
        preview: PreviewPlan | None = None,
    ) -> RenderOutcome:
        wait_for_preload()
        from gpu_agent.engine.models import BaseModelError
        from gpu_agent.engine.render_hooks import PromptRefused
        from gpu_agent.engine.render_types import LoraRef, RenderError, RenderRequest

        if job.mode == "group":
            from gpu_agent.agent.engine_group import render_group

            return render_group(self, job, loras, source, progress=progress, should_stop=should_stop)
        if job.mode == "edit":
            from gpu_agent.agent.engine_edit import render_edit

            return render_edit(self, job, loras, source, progress=progress, should_stop=should_stop)
        if len(loras) > 1:
            raise JobError(
                "unsupported", "Pictures with several trained models at once are not supported yet."
            )
        try:
            image = Image.open(io.BytesIO(source)) if source is not None else None
        except (UnidentifiedImageError, OSError):
            raise JobError(
                "source_unreadable", "The picture this render starts from cannot be read."
            ) from None
        try:
            request = RenderRequest.from_job(job, image)
            lora = LoraRef(model_id=_model_id(job, loras[0]), path=loras[0]) if loras else None
            if low_memory:
                # One image at a time halves the activations of the batch; the seeds stay the same.
                return self._render_one_by_one(request, lora, job.base_model, progress, should_stop, preview)
            renderer = self.renderer(job.base_model)
            key = self._batch_key(request, job.base_model)
            share: float | None = None
            if key is not None:
                images, share = self._batched(
                    renderer, key, request, lora, _stopper(progress, should_stop), preview
                )
            else:
                images = renderer.render(
                    request,
                    lora,
                    progress=_stopper(progress, should_stop),
                    preview=preview,
                )
        except (RenderError, PromptRefused) as err:
            raise JobError(_render_code(err), str(err)[:500] or "The render was refused.") from None
        except BaseModelError as err:
            raise _base_model_error(err) from None
        return RenderOutcome(
            pngs=[i.png for i in images], flagged=[i.flagged for i in images], gpu_seconds=share
        )

    def _batch_key(self, request: RenderRequest, base_model: str) -> BatchKey | None:
        from gpu_agent.engine.batch import batch_key

        return batch_key(request, base_model) if self.batcher is not None else None

    def _batched(
        self,
        renderer: Renderer,
        key: BatchKey,
        request: RenderRequest,
        lora: LoraRef | None,
        progress: Progress,
        preview: PreviewPlan | None,
    ) -> tuple[list[RenderedImage], float]:
        """This job's pictures from the mixed-member batch it joins (alone when no compatible job comes), and
        its share of the batch's time."""
        from gpu_agent.engine.batch import BatchMember, render_batch

        assert self.batcher is not None
        result, share = self.batcher.submit(
            key,
            BatchMember(request, lora, progress=progress, preview=preview),
            lambda members: render_batch(renderer, members),
        )
        if isinstance(result, Exception):
            raise result
        return result, share

    def _render_one_by_one(
        self,
        request: RenderRequest,
        lora: LoraRef | None,
        base_model: str,
        progress: StepProgress,
        should_stop: ShouldStop,
        preview: PreviewPlan | None = None,
    ) -> RenderOutcome:
        import dataclasses

        renderer = self.renderer(base_model)
        pngs, flagged = [], []
        for i in range(request.n):
            one = dataclasses.replace(request, n=1, seed=request.seed + i)
            (image,) = renderer.render(
                one,
                lora,
                progress=_stopper(progress, should_stop),
                preview=preview if i == 0 else None,
            )
            pngs.append(image.png)
            flagged.append(image.flagged)
        return RenderOutcome(pngs=pngs, flagged=flagged)


def train_config(job: TrainJob, *, checkpoint_every: int, low_memory: bool = False) -> TrainConfig:
    """The TrainJob, 1:1: what it names, its params field by field (TrainConfig refuses a field it lacks), and
    the two things the agent decides. No default is filled in here: the recipe arrived in the job."""
    from gpu_agent.engine.training import TrainConfig

    return TrainConfig(
        base_model=job.base_model,
        token=job.subject_token,
        class_word=job.class_word,
        **job.params.model_dump(),
        checkpoint_every=checkpoint_every,
        # Memory-saving retry after an out-of-memory error: recompute activations instead of keeping them.
        gradient_checkpointing=low_memory,
    )


def _stopper(progress: StepProgress, should_stop: ShouldStop) -> Callable[[int, int], None]:
    def on_step(step: int, total: int) -> None:
        progress(step, total, None)
        if should_stop():
            # Raised inside diffusers' step callback: the denoising loop ends here, nothing is returned.
            raise Interrupted(step)

    return on_step


def _device(setting: str) -> torch.device:
    from gpu_agent.engine.models import pick_device

    return pick_device(setting)


def _model_id(job: RenderJob, path: Path) -> str:
    """The job names its model; one queued before jobs did is recognised by its key, else by its local file."""
    legacy = keys.model_of(job.model_keys[0]) if job.model_keys and job.model_id is None else None
    return job.model_id or legacy or path.stem


def _render_code(err: Exception) -> str:
    name = type(err).__name__
    return {
        "BadRenderRequest": "bad_request",
        "LoraLoadError": "model_unusable",
        "PromptRefused": "prompt_refused",
    }.get(name, "render_refused")


def _opened(pictures: Future[list[Path]]) -> Future[list[Image.Image]]:
    """The pictures, decoded as soon as the agent's checks hand them over (in the checking thread)."""
    opened: Future[list[Image.Image]] = Future()

    def on_ready(ready: Future[list[Path]]) -> None:
        try:
            opened.set_result([_open_photo(path, n) for n, path in enumerate(ready.result())])
        except BaseException as err:
            opened.set_exception(err)

    pictures.add_done_callback(on_ready)
    return opened


def _open_photo(path: Path, n: int) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise JobError(
            "photos_unreadable",
            f"Photo {n + 1} cannot be read as an image. Please run /train again with JPEG or PNG photos.",
        ) from None


BASE_MODEL_MESSAGE = (
    "The GPU machine could not load its base model; the operators have been told. Please try again later."
)


def _base_model_error(err: Exception) -> JobError:
    """The member hears that the base model is missing, never where the operators keep it (paths, cache
    folders, hub ids): the details go to the agent's log."""
    log.error("base model could not be loaded: %s", err)
    return JobError("base_model", BASE_MODEL_MESSAGE, permanent=False)
