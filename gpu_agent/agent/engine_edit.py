"""The EngineRunner's instruction edits: a RenderJob in mode "edit" through the engine's Editor (InstructPix2Pix).

The Editor is loaded on the runner's first edit (EDIT_MODEL; a hub model is read from the model cache) and kept
beside the warm Renderer. The member's LoRA, when the job carries one and ``edit_lora`` is on, is active during
the edit; it is checked first to fit the edit model (an SD 1.x LoRA does; another family is refused).
"""

from __future__ import annotations

import io
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from cloud.messages import EDIT_IMAGE_GUIDANCE, RenderJob
from gpu_agent.agent.engine_runner import _base_model_error, _device, _model_id, _render_code, _stopper
from gpu_agent.agent.runner import JobError, RenderOutcome, ShouldStop, StepProgress

if TYPE_CHECKING:
    from gpu_agent.agent.engine_runner import EngineRunner
    from gpu_agent.engine.edit import Editor

_editors: weakref.WeakKeyDictionary[Any, Editor] = weakref.WeakKeyDictionary()


def editor_for(runner: EngineRunner) -> Editor:
    """The runner's Editor for its EDIT_MODEL setting (loaded on first use)."""
    from gpu_agent.engine.edit import Editor

    model = runner.settings.edit_model
    editor = _editors.get(runner)
    if editor is None or editor.model != model:
        _editors.pop(runner, None)  # free the old one before loading another
        editor = Editor(
            model,
            device=_device(runner.settings.device),
            cache_dir=runner.settings.model_cache_dir,
            max_resident=runner.settings.render_resident_loras,
            max_pixels=runner.settings.render_max_pixels,
        )
        _editors[runner] = editor
    return editor


def render_edit(
    runner: EngineRunner,
    job: RenderJob,
    loras: list[Path],
    source: bytes | None,
    *,
    progress: StepProgress,
    should_stop: ShouldStop,
) -> RenderOutcome:
    """The job's ``count`` edits of its source picture, picture i from seed + i."""
    from gpu_agent.engine.edit import EditRequest
    from gpu_agent.engine.models import BaseModelError
    from gpu_agent.engine.render_hooks import PromptRefused
    from gpu_agent.engine.render_types import LoraRef, RenderError

    if len(loras) > 1:
        raise JobError("unsupported", "An edit uses one trained model at most.")
    try:
        image = Image.open(io.BytesIO(source)) if source is not None else None
    except (UnidentifiedImageError, OSError):
        image = None
    if image is None:
        raise JobError("source_unreadable", "The picture to edit cannot be read.")
    try:
        request = EditRequest(
            instruction=job.prompt,
            source=image,
            subject=job.subject,
            negative_prompt=job.negative_prompt,
            seed=job.seed,
            n=job.count,
            steps=job.steps,
            guidance=job.guidance,
            image_guidance=job.image_guidance or EDIT_IMAGE_GUIDANCE,
        )
        lora = None
        if loras and job.edit_lora:
            lora = LoraRef(model_id=_model_id(job, loras[0]), path=loras[0])
        pictures = editor_for(runner).edit(request, lora, progress=_stopper(progress, should_stop))
    except (RenderError, PromptRefused) as err:
        raise JobError(_render_code(err), str(err)[:500] or "The edit was refused.") from None
    except BaseModelError as err:
        raise _base_model_error(err) from None
    return RenderOutcome(pngs=[p.png for p in pictures], flagged=[p.flagged for p in pictures])
