"""The agent's handling of a RenderJob in mode "group": every member's LoRA fetched and checked to be theirs,
the pictures rendered by the runner (engine/group), each face scored against its own member, each picture
safety-checked and stored under the job's keys, as a single render's are. A job with a source_key (V on a
group picture) is a variation of that picture."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cloud.messages import GroupMember, RenderJob
from gpu_agent.agent.group_likeness import group_likeness
from gpu_agent.agent.runner import Interrupted, JobError
from storage import keys
from storage.blobs.base import BlobNotFound

if TYPE_CHECKING:
    from gpu_agent.agent.jobs import Handlers, JobContext, Outcome

NOT_THEIRS = "This group picture's order names a model that does not belong to the person it pictures."
MISSING = (
    "The trained model of someone in this group picture could not be found (it may have been deleted), "
    "so nothing was rendered."
)


def member_lora(handlers: Handlers, member: GroupMember) -> Path:
    """The member's LoRA as a local file (the agent's LoRA cache); only their own model's key is accepted."""
    if member.model_key != keys.model_key(member.user_id, member.model_id):
        raise JobError("bad_job", NOT_THEIRS)
    try:
        data = handlers.blobs.get(member.model_key)
    except (BlobNotFound, ValueError):
        raise JobError("model_missing", MISSING) from None
    return handlers.lora_cache.path_for(member.model_key, data)


def variation_source(handlers: Handlers, job: RenderJob) -> bytes | None:
    """The group picture a variation (V) starts from, None for a new picture."""
    if not job.source_key:
        return None
    try:
        return handlers.blobs.get(job.source_key)
    except (BlobNotFound, ValueError):
        raise JobError("source_missing", "The picture this render starts from is gone.") from None


def render_group(handlers: Handlers, ctx: JobContext, job: RenderJob) -> Outcome:
    from gpu_agent.agent.jobs import Outcome

    ctx.total = job.steps
    loras = [member_lora(handlers, member) for member in job.members]
    source = variation_source(handlers, job)
    ctx.reporter.started(step=0, total=job.steps)

    def progress(step: int, total: int, loss: float | None = None) -> None:
        ctx.step, ctx.total = step, total
        ctx.reporter.progress(step, total)

    try:
        rendered = handlers._with_oom_retry(
            ctx,
            lambda low: handlers.runner.render(
                job, loras, source, progress=progress, should_stop=ctx.should_stop, low_memory=low
            ),
        )
    except Interrupted:
        return Outcome("lease_lost" if ctx.lease_lost else "preempted", step=ctx.step, total=ctx.total)
    pngs: list[bytes] = list(rendered.pngs)  # type: ignore[attr-defined]
    scores = group_likeness(handlers.blobs, job, pngs, rendered.member_boxes)  # type: ignore[attr-defined]
    return handlers.store_pictures(ctx, job, pngs, rendered, scores)
