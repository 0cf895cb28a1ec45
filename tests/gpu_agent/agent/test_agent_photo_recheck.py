"""The agent's re-check of the stored crops agrees with the door (issue 11, item 7): it trains on every crop the
door kept, and what it refuses it names, in the failure the member reads and in the agent's log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from agent_testkit import AgentThread, EventLog, door_crops, job_for

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent import JobError, TrainRequest
from storage.blobs.base import BlobStore
from storage.settings import Settings

StartAgent = Callable[..., AgentThread]


class RecordingRunner:
    """Stands in for the GPU trainer (no GPU here): it records the photos training would get, then stops the
    job with a failure of its own so the test can tell it ran."""

    def __init__(self) -> None:
        self.photos: list[bytes] | None = None
        self.warm = False

    def train(self, request: TrainRequest, **_: Any) -> Any:
        self.photos = [p.read_bytes() for p in request.photos]
        raise JobError("stand_in_trainer", "the stand-in trainer stops here")

    def render(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not used")


@pytest.mark.parametrize("resolution", [512, 1024])
def test_the_agent_trains_on_every_crop_the_door_kept(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
    resolution: int,
) -> None:
    runner = RecordingRunner()
    agent = run_agent_thread(
        make_settings(agent_check_photos=True, min_good_photos=5, fewshot_augment_below=0),
        runner=runner,
        queues=queues,
        blobs=blobs,
    )
    crops = door_crops(resolution)
    job = job_for(blobs, crops, resolution)
    queues.train.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 120, "the job's end")
    assert failed.error is not None and failed.error.code == "stand_in_trainer", failed.error
    assert runner.photos == crops  # all five, in the order the door stored them
    agent.stop()


def test_a_set_the_door_would_refuse_fails_naming_the_photos_and_is_logged(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A mixed-up message: photo 2's crop stored twice in place of photo 5's. The door refuses such a set too
    # (the same crop twice), so the agent may; it must say which photos to replace, and log why it gave up.
    caplog.set_level(logging.WARNING, logger="gpu_agent.agent.worker")
    runner = RecordingRunner()
    agent = run_agent_thread(
        make_settings(agent_check_photos=True, min_good_photos=5, fewshot_augment_below=0),
        runner=runner,
        queues=queues,
        blobs=blobs,
    )
    crops = door_crops(512)
    job = job_for(blobs, [*crops[:4], crops[1]], 512)
    queues.train.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 120, "the job's end")
    assert failed.error is not None and failed.error.code == "photos_rejected"
    assert "Only 4 of 5 photos" in failed.error.message
    assert "❌ photo 5: it is the same picture as photo 2" in failed.error.message
    assert runner.photos is None  # no training started
    logged = [r.getMessage() for r in caplog.records if job.job_id in r.getMessage()]
    assert any("failed for good (photos_rejected)" in m and "photo 5" in m for m in logged), logged
    agent.stop()
