"""Queue fixtures: one factory per backend, so every contract test runs against the embedded SQLite queue and
against SQS (moto's real HTTP server, boto3 pointed at it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud.queues.base import JobQueue
from cloud.queues.sqlite import SqliteQueue
from cloud.queues.sqs import SqsQueue, make_client

MakeQueue = Callable[..., JobQueue]


@pytest.fixture(params=["sqlite", "sqs"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> Iterator[MakeQueue]:
    """``make_queue(name=None, max_receives=3)``: a handle on a queue of this test. Each call opens a separate
    handle (its own SQLite connections or its own boto3 client), as a second consumer process would."""
    made: list[JobQueue] = []
    endpoint = request.getfixturevalue("moto_endpoint") if request.param == "sqs" else None

    def make(name: str | None = None, max_receives: int = 3) -> JobQueue:
        queue_name = name or unique_name
        if endpoint is None:
            queue: JobQueue = SqliteQueue(tmp_path / "queue.db", queue_name, max_receives=max_receives)
        else:
            queue = SqsQueue(make_client("us-east-1", endpoint), queue_name, max_receives=max_receives)
        made.append(queue)
        return queue

    make.backend = request.param  # type: ignore[attr-defined]
    yield make
    for queue in made:
        queue.close()
