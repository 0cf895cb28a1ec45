"""The agent's re-check of the photos runs beside the training's start (issue 16, time to first picture): the
trainer is already at work while the crops are checked, and a set the check refuses still fails the job with the
check's own message, with nothing stored but the member's photos."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from agent_testkit import AgentThread, EventLog, door_crops, job_for

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent import JobError, TrainRequest
from gpu_agent.agent.engine_runner import EngineRunner
from storage.blobs.base import BlobStore
from storage.settings import Settings

StartAgent = Callable[..., AgentThread]


class WaitingRunner:
    """Stands in for the trainer (no GPU here): says when it was called, then takes the photos as a trainer does
    when it encodes them, and stops the job with a failure of its own."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.photos: list[bytes] | None = None
        self.warm = False

    def train(self, request: TrainRequest, **_: Any) -> Any:
        self.called.set()
        self.photos = [p.read_bytes() for p in request.photos]
        raise JobError("stand_in_trainer", "the stand-in trainer stops here")

    def render(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not used")


def slow_check(monkeypatch: pytest.MonkeyPatch, until: threading.Event) -> list[bool]:
    """Make the agent's check of the crops wait (at most 20 s) for ``until``; returns whether it came in time."""
    import gpu_agent.photos

    real = gpu_agent.photos.check_crops
    came: list[bool] = []

    def check_crops(*args: Any, **kwargs: Any) -> Any:
        came.append(until.wait(20))
        return real(*args, **kwargs)

    monkeypatch.setattr(gpu_agent.photos, "check_crops", check_crops)
    return came


def test_the_trainer_starts_while_the_photos_are_checked_and_gets_the_checked_photos(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = WaitingRunner()
    came = slow_check(monkeypatch, runner.called)  # the check finishes only once the trainer has started
    agent = run_agent_thread(
        make_settings(agent_check_photos=True, min_good_photos=5, fewshot_augment_below=0),
        runner=runner,
        queues=queues,
        blobs=blobs,
    )
    crops = door_crops(512)
    job = job_for(blobs, crops, 512)
    queues.train.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 120, "the job's end")
    assert came == [True]  # the trainer was called while the check ran
    assert failed.error is not None and failed.error.code == "stand_in_trainer", failed.error
    assert runner.photos == crops  # what the trainer got is what the check passed
    agent.stop()


def test_a_set_refused_while_the_model_loads_fails_with_the_checks_message_and_stores_nothing(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gpu_agent.engine.training import trainer

    loaded = threading.Event()
    real_load = trainer.load_base_pipeline

    def load_base_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_load(*args, **kwargs)
        loaded.set()
        return pipe

    monkeypatch.setattr(trainer, "load_base_pipeline", load_base_pipeline)
    came = slow_check(monkeypatch, loaded)  # the refusal comes once the real trainer has loaded its model
    settings = make_settings(agent_check_photos=True, min_good_photos=5, fewshot_augment_below=0)
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    crops = door_crops(512)  # five crops at the door's size; trained on at 64 px, the tiny model's
    # A mixed-up message: photo 2's crop stored twice in place of photo 5's (the door refuses such a set too).
    job = job_for(
        blobs, [*crops[:4], crops[1]], 64, prior_preservation=True, num_class_images=2, class_image_steps=2
    )
    photo_keys = set(job.photo_keys)
    queues.train.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 180, "the job's end")
    assert came == [True]  # the trainer had loaded the model when the check refused the set
    assert failed.error is not None and failed.error.code == "photos_rejected", failed.error
    assert "Only 4 of 5 photos" in failed.error.message
    assert "❌ photo 5: it is the same picture as photo 2" in failed.error.message
    assert not events.of(job.job_id, "done") and not events.of(job.job_id, "checkpoint")
    assert not events.of(job.job_id, "started")  # "started" waits for the checks, as before they overlapped
    assert set(blobs.list()) == photo_keys  # no class image, checkpoint, LoRA or likeness reference stored
    agent.stop()
