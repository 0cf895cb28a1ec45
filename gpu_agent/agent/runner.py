"""The seam between the agent and the ML engine: a JobRunner trains and renders, nothing else.

The agent (queues, leases, blobs, events) never imports torch; it drives a JobRunner. The real one is
``EngineRunner`` (gpu_agent.agent.engine_runner) over the diffusers engine; tests drive the same loop with the real
engine on tiny models, and with a slow runner only where the point is time passing (heartbeats).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cloud.messages import RenderJob, TrainJob
from gpu_agent.engine.preview import PreviewPlan

ShouldStop = Callable[[], bool]
"""Polled by the runner between steps: True means stop now (spot notice, lease lost, shutdown)."""

StepProgress = Callable[[int, int, "float | None"], None]
"""progress(step, total, loss) after each step."""


class Interrupted(Exception):
    """The runner stopped because should_stop() said so. For training, a checkpoint at ``step`` is on disk."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step


class JobError(Exception):
    """A failure with a code and a message safe to show to the member.

    ``permanent``: retrying cannot help (bad input), so the member is told at once and the message acked.
    """

    def __init__(self, code: str, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message[:500]
        self.permanent = permanent


@dataclass(frozen=True)
class TrainRequest:
    job: TrainJob
    pictures: Future[list[Path]]
    """The pictures to train on, still being checked by the agent when training starts (agent/photo_prep.py):
    a runner waits for them only when it needs them; a refused set raises the check's JobError there."""
    output_dir: Path
    checkpoint_dir: Path
    checkpoint_every: int
    low_memory: bool = False
    class_image_dir: Path | None = None  # prior-preservation images shared through the blob store

    @property
    def photos(self) -> list[Path]:
        """The pictures to train on (waits for the agent's checks; raises their JobError)."""
        return self.pictures.result()


@dataclass(frozen=True)
class TrainOutcome:
    weights_path: Path
    meta_path: Path
    steps: int
    resumed_from: int = 0
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)
    """Seconds per phase of the training (the engine's clock: model_load, caching, steps, eval, save...)."""


@dataclass(frozen=True)
class RenderOutcome:
    pngs: list[bytes] = field(repr=False)
    flagged: list[str | None] = field(default_factory=list)
    member_boxes: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    """Mode "group": per picture, per member (left to right), the box where their face is (likeness)."""
    gpu_seconds: float | None = None
    """This job's share of a mixed-member batch's time (agent/batching); None: the call's own time is the job's."""


class JobRunner(Protocol):
    @property
    def warm(self) -> bool:
        """True while a render pipeline is loaded (the agent then takes renders first)."""

    def train(
        self,
        request: TrainRequest,
        *,
        progress: StepProgress,
        should_stop: ShouldStop,
        preview: PreviewPlan | None = None,
    ) -> TrainOutcome:
        """Train a LoRA, resuming from the newest checkpoint in ``request.checkpoint_dir`` if there is one;
        ``preview`` receives a small sample of the model so far every ``preview.every_steps`` steps.

        Raises Interrupted (after saving a checkpoint) when should_stop() turns true, JobError for bad input.
        """

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
        """Render ``job.count`` PNGs (``preview`` receives thumbnails of the first while it denoises). Raises
        Interrupted when should_stop() turns true, JobError for bad input."""


def is_out_of_memory(err: BaseException) -> bool:
    """A GPU out-of-memory error, without importing torch here (the agent stays torch-free)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    # Some kernels surface OOM as a plain RuntimeError with CUDA's message.
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
