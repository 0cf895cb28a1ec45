"""The agent's handling of a RenderJob in mode "backdrop" (the result button "Clean backdrop"): the stored picture's
person kept, its background replaced by a studio colour or blurred (gpu_agent/photos/backdrop.py), on the CPU of
the machine that holds the pictures. No diffusion model is loaded. The picture is scored for likeness (never
re-rolled: the member chose it) and safety-checked, then stored under the job's keys, as every render is."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloud.messages import RenderJob
from gpu_agent.agent.likeness import Judge
from gpu_agent.agent.runner import JobError
from storage.blobs.base import BlobNotFound

if TYPE_CHECKING:
    from gpu_agent.agent.jobs import Handlers, JobContext, Outcome

NO_PERSON = (
    "No face was found in that picture, so its background cannot be told apart from you. "
    "Try a picture where your face is clearly visible."
)


def render_backdrop(handlers: Handlers, ctx: JobContext, job: RenderJob) -> Outcome:
    from gpu_agent.photos.backdrop import NoFace, backdrop_png

    assert job.backdrop is not None and job.source_key is not None  # RenderJob's validator
    ctx.total = 1
    try:
        source = handlers.blobs.get(job.source_key)
    except (BlobNotFound, ValueError):
        raise JobError("source_missing", "The picture this backdrop starts from is gone.") from None
    ctx.reporter.started(step=0, total=1)
    try:
        png = backdrop_png(source, job.backdrop)
    except NoFace:
        raise JobError("no_face", NO_PERSON) from None
    except ValueError:
        raise JobError("source_unreadable", "The picture this backdrop starts from cannot be read.") from None
    ctx.step = 1
    ctx.reporter.progress(1, 1)
    pngs, scores = [png], None
    judge = Judge.for_render(handlers.blobs, job, retries=0)
    if judge is not None:
        pngs, scores = judge.improve(pngs, lambda index, attempt: png)
    return handlers.store_pictures(ctx, job, pngs, None, scores)
