"""The JobQueue contract, run against both backends: the embedded SQLite queue and SQS (moto's HTTP server).

Leases here are whole seconds because SQS visibility timeouts are; each wait is the shortest the contract allows.

Where moto's SQS (moto/sqs/models.py, 5.2) differs from Amazon SQS, and why these tests still mean something:
- moto accepts *any* earlier receipt handle of a message for DeleteMessage and ChangeMessageVisibility, and
  changes the visibility of a message whose lease already ran out; Amazon SQS answers a stale delete with
  success but "might not" delete (DeleteMessage docs) and refuses the visibility change. SqsQueue checks the
  lease deadline on the
  client before ack/extend/release, so both servers behave the same (test_lease_lost_to_another_consumer).
- moto's long poll wakes at once on a send (a Condition), but notices a message whose lease ran out only on
  its once-a-second re-check; Amazon SQS has no such step. The waits below allow for it.
- moto's ReceiveMessage does not lock the check-and-mark of a message, so two concurrent receives could in
  principle both take it (a thread switch between the two steps); Amazon SQS standard queues also promise only
  at-least-once delivery. Consumers stay idempotent (deterministic blob keys, event ids applied once).
- moto moves a message to the DLQ on the receive after maxReceiveCount deliveries, as SQS does, but purges
  without SQS's one-purge-a-minute limit.
"""

from __future__ import annotations

import threading
import time

import pytest

from cloud.queues.base import LeaseExpired
from cloud.queues.sqs import SqsQueue


def test_round_trip_send_receive_ack(make_queue) -> None:
    queue = make_queue()
    before = time.time()
    message_id = queue.send('{"hello": "world"}')
    [lease] = queue.receive(max_messages=10, wait_s=0, lease_s=30)
    assert lease.message_id == message_id
    assert lease.body == '{"hello": "world"}'
    assert lease.receive_count == 1
    assert lease.queue_name == queue.name
    assert lease.sent_at is not None and before - 1 <= lease.sent_at <= time.time() + 1
    assert 25 < lease.deadline - time.monotonic() <= 30
    queue.ack(lease)
    assert queue.receive(wait_s=0) == []
    assert queue.depth().backlog == 0


def test_redelivered_after_lease_expiry_with_a_new_receipt(make_queue) -> None:
    queue = make_queue()
    queue.send("job")
    [first] = queue.receive(lease_s=1)
    assert queue.receive(wait_s=0) == []  # invisible while leased
    [again] = queue.receive(wait_s=5, lease_s=30)
    assert again.message_id == first.message_id
    assert again.receive_count == 2
    assert again.receipt != first.receipt
    assert time.monotonic() >= first.deadline


def test_heartbeat_keeps_message_invisible_past_first_lease(make_queue) -> None:
    worker, other = make_queue(), make_queue()
    worker.send("long job")
    [lease] = worker.receive(lease_s=1)
    first_deadline = lease.deadline
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # 2.5 leases long
        worker.extend(lease, 2)
        assert other.receive(wait_s=0) == [], "another consumer got a message whose lease was being renewed"
        time.sleep(0.4)
    assert time.monotonic() > first_deadline + 1
    assert lease.deadline > time.monotonic()
    worker.ack(lease)
    assert other.receive(wait_s=0) == []


def test_dead_letter_after_max_receives(make_queue) -> None:
    queue = make_queue(max_receives=2)
    message_id = queue.send("poison")
    for attempt in (1, 2):
        [lease] = queue.receive(lease_s=30)
        assert lease.receive_count == attempt
        queue.release(lease)
    # SQS (and moto) move the message to the DLQ on the receive after the last allowed one.
    assert queue.receive(wait_s=1) == []
    assert queue.dead_letter_depth() == 1
    assert queue.depth().backlog == 0
    dlq = make_queue(name=f"{queue.name}-dlq")
    [dead] = dlq.receive(wait_s=1)
    assert dead.body == "poison"
    if make_queue.backend == "sqlite":
        assert dead.message_id == message_id
        assert "received 2 times" in dead.attributes["dead_letter_reason"]
        assert dead.receive_count == 1  # counted afresh, so inspecting the DLQ does not dead-letter it again


def test_long_poll_returns_as_soon_as_a_message_arrives(make_queue) -> None:
    consumer, producer = make_queue(), make_queue()
    consumer.receive(wait_s=0)  # warm up connections so the timing below is the wait alone
    sender = threading.Timer(0.3, producer.send, args=("wake up",))
    started = time.monotonic()
    sender.start()
    try:
        leases = consumer.receive(wait_s=10)
    finally:
        sender.join()
    took = time.monotonic() - started
    assert [lease.body for lease in leases] == ["wake up"]
    assert 0.25 <= took < 1.5, f"long poll took {took:.2f}s for a message sent after 0.3s (wait_s=10)"


def test_long_poll_gives_up_after_wait_s(make_queue) -> None:
    queue = make_queue()
    started = time.monotonic()
    assert queue.receive(wait_s=1) == []
    assert 0.9 <= time.monotonic() - started < 2.5


def test_two_consumers_never_hold_one_message_at_once(make_queue) -> None:
    producer = make_queue()
    sent = {producer.send(f"job {n}") for n in range(30)}
    got: dict[str, list[str]] = {}
    lock = threading.Lock()

    def consume(name: str) -> None:
        queue = make_queue()
        mine = got.setdefault(name, [])
        while True:
            leases = queue.receive(max_messages=3, wait_s=1, lease_s=60)
            if not leases:
                return
            for lease in leases:
                with lock:
                    mine.append(lease.message_id)
                queue.ack(lease)

    threads = [threading.Thread(target=consume, args=(f"c{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    received = [message_id for ids in got.values() for message_id in ids]
    assert set(received) == sent
    if isinstance(producer, SqsQueue):
        # At-least-once (Amazon SQS standard queues; and moto's unlocked receive, see above): a duplicate is
        # allowed, rarely — the consumers are idempotent. The embedded queue promises exactly one holder.
        assert len(received) - len(set(received)) <= 2, "SQS delivered many messages to two consumers"
    else:
        assert len(received) == len(set(received)), "a message was delivered to two consumers while leased"


def test_ack_with_expired_lease_raises_and_the_message_stays(make_queue) -> None:
    queue = make_queue()
    queue.send("slow job")
    [lease] = queue.receive(lease_s=1)
    time.sleep(1.1)
    with pytest.raises(LeaseExpired):
        queue.ack(lease)
    with pytest.raises(LeaseExpired):
        queue.extend(lease, 30)
    [again] = queue.receive(wait_s=3)
    assert again.message_id == lease.message_id


def test_lease_lost_to_another_consumer(make_queue) -> None:
    slow, fast = make_queue(), make_queue()
    slow.send("contested")
    [stale] = slow.receive(lease_s=1)
    [fresh] = fast.receive(wait_s=5, lease_s=30)
    assert fresh.message_id == stale.message_id
    for late in (lambda: slow.ack(stale), lambda: slow.extend(stale, 30), lambda: slow.release(stale)):
        with pytest.raises(LeaseExpired):
            late()
    fast.ack(fresh)  # the stale consumer's attempts took nothing from the owner
    assert fast.depth().backlog == 0


def test_release_with_delay_is_honoured(make_queue) -> None:
    queue = make_queue()
    queue.send("retry me")
    [lease] = queue.receive(lease_s=30)
    queue.release(lease, delay_s=2)
    released = time.monotonic()
    assert queue.receive(wait_s=0) == []
    depth = queue.depth()
    assert depth.visible == 0 and depth.backlog == 1
    [again] = queue.receive(wait_s=5)
    assert time.monotonic() - released >= 1.5
    assert again.message_id == lease.message_id and again.receive_count == 2


def test_release_now_makes_it_visible_at_once(make_queue) -> None:
    queue = make_queue()
    queue.send("give back")
    [lease] = queue.receive(lease_s=30)
    queue.release(lease)
    [again] = queue.receive(wait_s=2)
    assert again.message_id == lease.message_id


def test_send_with_delay(make_queue) -> None:
    queue = make_queue()
    queue.send("later", delay_s=1)
    sent = time.monotonic()
    assert queue.depth().delayed == 1
    assert queue.receive(wait_s=0) == []
    [lease] = queue.receive(wait_s=5)
    assert lease.body == "later"
    assert time.monotonic() - sent >= 0.8


def test_depth_counts_visible_in_flight_delayed_and_purge_empties(make_queue) -> None:
    queue = make_queue()
    for n in range(3):
        queue.send(f"m{n}")
    queue.send("delayed", delay_s=60)
    [lease] = queue.receive(lease_s=60)
    depth = queue.depth()
    assert (depth.visible, depth.in_flight, depth.delayed) == (2, 1, 1)
    assert depth.backlog == 4
    queue.dead_letter(lease, "inspecting")
    assert queue.dead_letter_depth() == 1
    assert queue.depth().backlog == 3
    queue.purge()
    assert queue.depth().backlog == 0
    assert queue.dead_letter_depth() == 0


def test_dead_letter_keeps_body_and_reason(make_queue) -> None:
    queue = make_queue()
    queue.send('{"v": 99}')
    [lease] = queue.receive(lease_s=30)
    queue.dead_letter(lease, "unknown TrainJob version")
    assert queue.receive(wait_s=0) == []
    [dead] = make_queue(name=f"{queue.name}-dlq").receive(wait_s=1)
    assert dead.body == '{"v": 99}'
    assert dead.attributes["dead_letter_reason"] == "unknown TrainJob version"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.send(""), "empty"),
        (lambda q: q.send("x" * (256 * 1024 + 1)), "limit"),
        (lambda q: q.send("nul \x00 byte"), "character"),
        (lambda q: q.send(b"bytes"), "str"),  # type: ignore[arg-type]
        (lambda q: q.send("x", delay_s=901), "delay_s"),
        (lambda q: q.receive(wait_s=21), "wait_s"),
        (lambda q: q.receive(max_messages=11), "max_messages"),
        (lambda q: q.receive(lease_s=-1), "lease_s"),
    ],
)
def test_bad_arguments_are_refused_clearly(make_queue, call, message) -> None:
    queue = make_queue()
    with pytest.raises((ValueError, TypeError), match=message):
        call(queue)
    assert queue.depth().backlog == 0


def test_lease_of_another_queue_is_refused(make_queue, unique_name) -> None:
    one, two = make_queue(), make_queue(name=f"{unique_name}-other")
    one.send("mine")
    [lease] = one.receive()
    with pytest.raises(ValueError, match="not"):
        two.ack(lease)
    one.ack(lease)


def test_dead_letters_are_listed_in_place_and_redriven_by_id(make_queue) -> None:
    queue = make_queue(max_receives=1)
    queue.send("died on it")
    [lease] = queue.receive(lease_s=30)
    queue.release(lease)
    assert queue.receive(wait_s=1) == []  # over max_receives: dead-lettered on this receive
    queue.send("malformed")
    [lease] = queue.receive(lease_s=30)
    queue.dead_letter(lease, "not JSON")

    listed = queue.dead_letters()
    assert sorted(d.body for d in listed) == ["died on it", "malformed"]
    by_body = {d.body: d for d in listed}
    assert by_body["malformed"].reason == "not JSON"
    assert "times without ack" in (by_body["died on it"].reason or "")
    assert all(d.sent_at is not None for d in listed)
    # Listing takes nothing: a second listing sees the same, the depth is unchanged, the main queue is empty.
    assert sorted(d.message_id for d in queue.dead_letters()) == sorted(d.message_id for d in listed)
    assert queue.dead_letter_depth() == 2 and queue.depth().backlog == 0
    assert len(queue.dead_letters(limit=1)) == 1

    assert queue.redrive(by_body["died on it"].message_id) is True
    assert queue.redrive(by_body["died on it"].message_id) is False  # moved already
    assert queue.redrive("no-such-message") is False
    assert [d.body for d in queue.dead_letters()] == ["malformed"]
    [again] = queue.receive(wait_s=1, lease_s=30)
    assert again.body == "died on it"
    assert again.receive_count == 1  # delivered afresh, so it is not dead-lettered straight back
    queue.ack(again)
    assert queue.dead_letter_depth() == 1
