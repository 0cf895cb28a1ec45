"""Job queues: the JobQueue interface (base), the embedded SQLite backend and Amazon SQS, chosen by
``settings.queue_url`` (``sqlite:///PATH`` or ``sqs://``)."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.queues.base import DeadLetter, JobQueue, Lease, LeaseExpired, QueueDepth, QueueError
from storage.settings import Settings

__all__ = [
    "DeadLetter",
    "JobQueue",
    "Lease",
    "LeaseExpired",
    "QueueDepth",
    "QueueError",
    "Queues",
    "open_queue",
    "open_queues",
]


def open_queue(settings: Settings, name: str) -> JobQueue:
    """The queue ``name`` (and its ``name-dlq``) on the backend ``settings.queue_url`` names.

    SQS: a missing queue is created with its dead-letter queue and redrive policy.
    """
    url = settings.queue_url
    if url.startswith("sqlite:///"):
        from cloud.queues.sqlite import SqliteQueue

        path = url.removeprefix("sqlite:///")
        if not path:
            raise ValueError("QUEUE_URL sqlite:/// needs a file path, e.g. sqlite:///data/queue.db")
        return SqliteQueue(path, name, max_receives=settings.queue_max_receives)
    if url == "sqs://":
        from cloud.queues.sqs import SqsQueue, make_client

        client = make_client(settings.aws_region, settings.sqs_endpoint_url or settings.aws_endpoint_url)
        return SqsQueue(client, name, max_receives=settings.queue_max_receives)
    raise ValueError(f"QUEUE_URL {url!r}: must be sqlite:///PATH or sqs://")


@dataclass
class Queues:
    """The three queues of a Photogen install: jobs to train, jobs to render, events back to the bot."""

    train: JobQueue
    render: JobQueue
    events: JobQueue

    def all(self) -> tuple[JobQueue, JobQueue, JobQueue]:
        return (self.train, self.render, self.events)

    def close(self) -> None:
        for queue in self.all():
            queue.close()


def open_queues(settings: Settings) -> Queues:
    """``{queue_prefix}-train``, ``-render`` and ``-events``."""
    prefix = settings.queue_prefix
    return Queues(
        train=open_queue(settings, f"{prefix}-train"),
        render=open_queue(settings, f"{prefix}-render"),
        events=open_queue(settings, f"{prefix}-events"),
    )
