"""The EngineRunner's group pictures: a RenderJob in mode "group" through the engine's GroupComposer.

A job with a ``source_key`` (V on a group picture) is a variation: it starts from that picture. The job's
``face_detail`` decides whether each member's face gets the face pass.

The composer works on the runner's warm Renderer (one base model, members' LoRAs in its adapter slots) and
loads its own models (pose ControlNet, CLIPSeg) once per Renderer.
"""

from __future__ import annotations

import io
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from cloud.messages import RenderJob
from gpu_agent.agent.engine_runner import _base_model_error, _render_code, _stopper
from gpu_agent.agent.runner import JobError, RenderOutcome, ShouldStop, StepProgress

if TYPE_CHECKING:
    from gpu_agent.agent.engine_runner import EngineRunner

_composers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def composer_for(runner: EngineRunner, base_model: str) -> Any:
    """The GroupComposer of the runner's Renderer for ``base_model`` (made on first use)."""
    from gpu_agent.engine.group.compose import GroupComposer, GroupConfig

    renderer = runner.renderer(base_model)
    composer = _composers.get(renderer)
    if composer is None:
        composer = GroupComposer(
            renderer, GroupConfig.from_settings(runner.settings), cache_dir=runner.settings.model_cache_dir
        )
        _composers[renderer] = composer
    return composer


def render_group(
    runner: EngineRunner,
    job: RenderJob,
    loras: list[Path],
    source: bytes | None = None,
    *,
    progress: StepProgress,
    should_stop: ShouldStop,
) -> RenderOutcome:
    """The job's ``count`` group pictures; ``loras`` are the members' files, in ``job.members``' order;
    ``source``: the picture a variation starts from (the job's source_key, fetched)."""
    from gpu_agent.engine.group.compose import GroupMemberLora, GroupRequest
    from gpu_agent.engine.models import BaseModelError
    from gpu_agent.engine.render_hooks import PromptRefused
    from gpu_agent.engine.render_types import LoraRef, RenderError

    if len(loras) != len(job.members):
        raise JobError("bad_job", "This group picture's order does not match its members.")
    start = None
    if source is not None:
        try:
            start = Image.open(io.BytesIO(source))
            start.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            raise JobError(
                "source_unreadable", "The picture this render starts from cannot be read."
            ) from None
    try:
        members = tuple(
            GroupMemberLora(LoraRef(model_id=m.model_id, path=path), m.subject)
            for m, path in zip(job.members, loras, strict=True)
        )
        request = GroupRequest(
            prompt=job.prompt,
            members=members,
            layout=job.layout,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            n=job.count,
            width=job.width,
            height=job.height,
            steps=job.steps,
            guidance=job.guidance,
            face_detail=job.face_detail,
            source=start,
            strength=job.strength if start is not None else None,
        )
        pictures = composer_for(runner, job.base_model).render(
            request, progress=_stopper(progress, should_stop)
        )
    except (RenderError, PromptRefused) as err:
        raise JobError(_render_code(err), str(err)[:500] or "The render was refused.") from None
    except BaseModelError as err:
        raise _base_model_error(err) from None
    return RenderOutcome(
        pngs=[p.rendered.png for p in pictures],
        flagged=[p.rendered.flagged for p in pictures],
        member_boxes=[list(p.boxes) for p in pictures],
    )
