"""What only the SQS backend does: create queues with their redrive policy (against moto's HTTP server)."""

from __future__ import annotations

import json

import pytest

from cloud.queues.base import QueueError
from cloud.queues.sqs import SqsQueue, ensure_queue, make_client


@pytest.fixture
def sqs(moto_endpoint: str):
    client = make_client("us-east-1", moto_endpoint)
    yield client
    client.close()


def _redrive(sqs, url: str) -> dict:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    return json.loads(attrs["RedrivePolicy"])


def test_ensure_queue_creates_queue_and_dlq_with_redrive_idempotently(sqs, unique_name: str) -> None:
    url, dlq_url = ensure_queue(sqs, unique_name, max_receives=4)
    policy = _redrive(sqs, url)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert policy["deadLetterTargetArn"] == dlq_arn and dlq_arn.endswith(f"{unique_name}-dlq")
    assert int(policy["maxReceiveCount"]) == 4
    # again, with a new limit: same queues, policy updated
    assert ensure_queue(sqs, unique_name, max_receives=6) == (url, dlq_url)
    assert int(_redrive(sqs, url)["maxReceiveCount"]) == 6


def test_missing_queue_is_created_on_open_unless_told_not_to(sqs, unique_name: str) -> None:
    with pytest.raises(QueueError, match="does not exist"):
        SqsQueue(sqs, unique_name, create=False)
    queue = SqsQueue(sqs, unique_name, max_receives=2)
    assert int(_redrive(sqs, queue.url)["maxReceiveCount"]) == 2
    # an agent opening the existing queue needs only GetQueueUrl
    existing = SqsQueue(sqs, unique_name, create=False)
    assert existing.url == queue.url
    assert existing.dead_letter_depth() == 0


def test_ensure_queue_refuses_bad_limits(sqs, unique_name: str) -> None:
    with pytest.raises(ValueError, match="max_receives"):
        ensure_queue(sqs, unique_name, max_receives=0)
    with pytest.raises(ValueError, match="queue name"):
        ensure_queue(sqs, "x" * 80, max_receives=3)
