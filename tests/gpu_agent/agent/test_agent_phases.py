"""The agent records where a training's time went (photogen_agent_phase_seconds): the trainer's own phases, the
upload and the first renders — what bench/first_picture.py breaks the time to a first picture into."""

from __future__ import annotations

from collections.abc import Callable

from agent_testkit import AgentThread, EventLog, train_job

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from storage.blobs.base import BlobStore
from storage.settings import Settings

StartAgent = Callable[..., AgentThread]
PHASES = ("photos", "model_load", "class_images", "caching", "setup", "steps", "eval", "save", "upload")


def test_a_training_job_records_each_phase_once_and_they_fit_in_the_job(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
) -> None:
    settings = make_settings()
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = train_job(blobs, steps=4, renders=1)
    queues.train.send(encode(job))
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 180, "training done")
    agent.stop()
    registry = agent.agent.metrics.registry

    def sample(suffix: str, phase: str) -> float | None:
        return registry.get_sample_value(
            f"photogen_agent_phase_seconds_{suffix}", {"kind": "train", "phase": phase}
        )

    for phase in (*PHASES, "first_renders"):
        assert sample("count", phase) == 1.0, phase
    assert sample("sum", "steps") > 0 and sample("sum", "first_renders") > 0  # type: ignore[operator]
    inside = sum(sample("sum", p) or 0.0 for p in (*PHASES, "first_renders", "checkpoints"))
    job_s = registry.get_sample_value("photogen_agent_job_duration_seconds_sum", {"kind": "train"})
    assert job_s is not None and inside <= job_s
