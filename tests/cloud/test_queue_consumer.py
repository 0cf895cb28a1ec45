"""cloud/consumer.py over both backends: good messages come back typed; a malformed body or an unknown version
ends in the dead-letter queue with the reason, is logged, and never reaches (or crashes) the caller."""

from __future__ import annotations

import json
import logging

from cloud.consumer import receive
from cloud.messages import Event, TrainJob, encode


def _job(job_id: str) -> TrainJob:
    return TrainJob(
        job_id=job_id,
        order_id="o1",
        user_id="u1",
        model_id="m1",
        photo_keys=["users/u1/photos/o1/0.jpg"],
        subject_token="sks",
        class_word="person",
        base_model="tiny-sd",
    )


def test_bad_bodies_are_dead_lettered_with_reason_and_good_ones_returned(make_queue, caplog) -> None:
    queue = make_queue()
    good = _job("good1")
    future = json.loads(encode(_job("future"))) | {"v": 2}
    queue.send("{not json")
    queue.send(json.dumps(future))
    queue.send(encode(good))
    queue.send('{"v": 1, "job_id": "x"}')  # missing fields
    caplog.set_level(logging.WARNING, logger="cloud.consumer")

    got = []
    for _ in range(4):  # SQS may hand out fewer than asked for per call
        got += receive(queue, TrainJob, max_messages=10, wait_s=0, lease_s=30)
        if queue.dead_letter_depth() == 3 and got:
            break
    assert [job for _, job in got] == [good]
    queue.ack(got[0][0])
    assert queue.dead_letter_depth() == 3
    assert queue.depth().backlog == 0

    dlq = make_queue(name=f"{queue.name}-dlq")
    reasons = {}
    for _ in range(4):
        for lease in dlq.receive(max_messages=10, wait_s=0):
            reasons[lease.body] = lease.attributes["dead_letter_reason"]
    assert "malformed TrainJob" in reasons["{not json"]
    assert "unknown TrainJob version" in reasons[json.dumps(future)]
    assert "malformed TrainJob" in reasons['{"v": 1, "job_id": "x"}']
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "unknown TrainJob version" in logged
    assert "{not json" not in logged  # bodies are not logged, only ids and reasons


def test_a_body_of_the_wrong_message_type_is_dead_lettered(make_queue) -> None:
    queue = make_queue()
    queue.send(encode(_job("j1")))
    assert receive(queue, Event, wait_s=0) == []
    assert queue.dead_letter_depth() == 1


def test_consumer_survives_losing_the_lease_of_a_bad_body(make_queue, caplog) -> None:
    queue = make_queue()
    queue.send("garbage")
    caplog.set_level(logging.WARNING, logger="cloud.consumer")
    # lease_s=0: the lease is gone before the consumer can dead-letter; it must log and return, not raise.
    assert receive(queue, TrainJob, wait_s=0, lease_s=0) == []
    assert "could not dead-letter" in caplog.text
    assert queue.depth().backlog == 1  # it comes back and is dead-lettered next time
