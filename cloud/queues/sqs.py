"""Amazon SQS as a JobQueue (boto3): a standard queue whose redrive policy moves a message to ``NAME-dlq`` after
``max_receives`` deliveries. Works against any SQS-compatible endpoint (moto, ElasticMQ) via an endpoint URL.

SQS itself does not refuse a late DeleteMessage: with a stale receipt handle it answers success and may keep or
delete the message. So this backend also checks the lease's deadline on the client before ack/extend/release,
and that deadline starts LEASE_MARGIN_S earlier than SQS's own clock, to cover the time the receive's answer
spent on the wire.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from cloud.queues import _checks
from cloud.queues.base import DeadLetter, JobQueue, Lease, LeaseExpired, QueueDepth, QueueError

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 0.5
# SQS cannot peek: listing dead letters receives them under this visibility timeout, then makes them visible
# again at once. Two listings at the same moment may each see part of the queue.
DLQ_PEEK_S = 30
DLQ_SCAN_MAX = 1000
# The longest SQS keeps a message: time for an operator to look at dead letters.
DLQ_RETENTION_S = 14 * 24 * 3600
_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_LOST_LEASE = {"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"}


def make_client(region: str, endpoint_url: str | None = None) -> Any:
    """An SQS client whose read timeout outlasts a 20 s long poll."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=_checks.MAX_WAIT_S + 10,
        max_pool_connections=16,  # the bot calls one queue from several threads
    )
    return boto3.session.Session().client("sqs", region_name=region, endpoint_url=endpoint_url, config=config)


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _lost_lease(err: ClientError) -> bool:
    # SQS answers a visibility change on a message no longer in flight with InvalidParameterValue naming the
    # ReceiptHandle ("Message does not exist or is not available for visibility timeout change").
    message = str(err.response.get("Error", {}).get("Message", "")).lower()
    return _code(err) in _LOST_LEASE or (_code(err) == "InvalidParameterValue" and "receipthandle" in message)


def _url_or_create(client: Any, name: str) -> str:
    # Attributes are set afterwards, never through CreateQueue: it refuses attributes that differ from those of
    # an existing queue, and two processes may race to create the same one (then both get its URL).
    try:
        return str(client.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as err:
        if _code(err) not in _MISSING_QUEUE:
            raise
    return str(client.create_queue(QueueName=name)["QueueUrl"])


def ensure_queue(client: Any, name: str, max_receives: int) -> tuple[str, str]:
    """Create (or update) ``name`` and ``name-dlq`` with the redrive policy; idempotent. Returns both URLs.

    Needs sqs:CreateQueue and sqs:SetQueueAttributes: run it from bootstrap, not from an agent.
    """
    _checks.check_name(f"{name}-dlq")
    if not 1 <= max_receives <= 1000:
        raise ValueError(f"max_receives must be 1-1000 (the SQS redrive limit), got {max_receives}")
    dlq_url = _url_or_create(client, f"{name}-dlq")
    client.set_queue_attributes(QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)})
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = _url_or_create(client, name)
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    client.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive})
    return url, dlq_url


class SqsQueue(JobQueue):
    """One SQS queue. A missing queue is created with its DLQ when ``create`` (needs create rights)."""

    def __init__(self, client: Any, name: str, max_receives: int = 5, create: bool = True) -> None:
        self.name = _checks.check_name(name)
        self.dlq_name = _checks.check_name(f"{name}-dlq")
        self.max_receives = max_receives
        self._client = client
        self._dlq_url: str | None = None
        try:
            # Only GetQueueUrl when the queue exists: the agents' IAM role may not create or configure queues.
            self.url: str = client.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as err:
            if _code(err) not in _MISSING_QUEUE:
                raise
            if not create:
                raise QueueError(f"SQS queue {name} does not exist (run `photogen aws bootstrap`)") from None
            self.url, self._dlq_url = ensure_queue(client, name, max_receives)

    @property
    def dlq_url(self) -> str:
        if self._dlq_url is None:
            # Looked up on first use: an agent that only sends events has no right to see the events DLQ.
            self._dlq_url = self._client.get_queue_url(QueueName=self.dlq_name)["QueueUrl"]
        return self._dlq_url

    def close(self) -> None:
        self._client.close()

    def send(self, body: str, delay_s: int = 0) -> str:
        _checks.check_body(body)
        _checks.check_seconds("delay_s", delay_s, _checks.MAX_SEND_DELAY_S)
        sent = self._client.send_message(QueueUrl=self.url, MessageBody=body, DelaySeconds=math.ceil(delay_s))
        return str(sent["MessageId"])

    def receive(self, max_messages: int = 1, wait_s: float = 0, lease_s: int = 30) -> list[Lease]:
        _checks.check_receive(max_messages, wait_s, lease_s)
        lease_s = math.ceil(lease_s)
        answer = self._client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=math.ceil(wait_s),  # SQS waits whole seconds only
            VisibilityTimeout=lease_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
        )
        deadline = time.monotonic() + lease_s - min(LEASE_MARGIN_S, lease_s / 4)
        leases = []
        for msg in answer.get("Messages", []):
            system = msg.get("Attributes", {})
            attributes = {
                key: value.get("StringValue", "")
                for key, value in msg.get("MessageAttributes", {}).items()
                if value.get("DataType", "").startswith("String")
            }
            sent_ms = system.get("SentTimestamp")
            leases.append(
                Lease(
                    message_id=msg["MessageId"],
                    body=msg["Body"],
                    receipt=msg["ReceiptHandle"],
                    receive_count=int(system.get("ApproximateReceiveCount", "1")),
                    queue_name=self.name,
                    deadline=deadline,
                    sent_at=int(sent_ms) / 1000 if sent_ms else None,
                    attributes=attributes,
                )
            )
        return leases

    def extend(self, lease: Lease, lease_s: int) -> None:
        _checks.check_seconds("lease_s", lease_s, _checks.MAX_LEASE_S)
        started = time.monotonic()  # SQS starts the new timeout no earlier than this
        self._visibility(lease, math.ceil(lease_s), "extend")
        lease.deadline = started + math.ceil(lease_s)

    def ack(self, lease: Lease) -> None:
        self._check_owned(lease, "ack")
        try:
            self._client.delete_message(QueueUrl=self.url, ReceiptHandle=lease.receipt)
        except ClientError as err:
            if _lost_lease(err):
                raise LeaseExpired(
                    f"ack on {self.name}: {_code(err)} for message {lease.message_id}"
                ) from None
            raise

    def release(self, lease: Lease, delay_s: int = 0) -> None:
        _checks.check_seconds("delay_s", delay_s, _checks.MAX_LEASE_S)
        self._visibility(lease, math.ceil(delay_s), "release")
        lease.deadline = time.monotonic()

    def dead_letter(self, lease: Lease, reason: str) -> None:
        self._check_owned(lease, "dead-letter")
        # The copy goes first: if the delete then fails the message exists twice, never zero times.
        self._client.send_message(
            QueueUrl=self.dlq_url,
            MessageBody=lease.body,
            MessageAttributes={
                _checks.DEAD_LETTER_REASON: {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
                "source_queue": {"DataType": "String", "StringValue": self.name},
            },
        )
        self.ack(lease)

    def depth(self) -> QueueDepth:
        attrs = self._attributes(self.url)
        return QueueDepth(
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def dead_letter_depth(self) -> int:
        attrs = self._attributes(self.dlq_url)
        return sum(
            int(attrs.get(key, 0))
            for key in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        peeked = self._peek_dead_letters(limit)
        try:
            return sorted((letter for letter, _ in peeked), key=lambda d: d.sent_at or 0.0)
        finally:
            self._unhide([receipt for _, receipt in peeked])

    def redrive(self, message_id: str) -> bool:
        peeked = self._peek_dead_letters(DLQ_SCAN_MAX, stop_at=message_id)
        found = [(letter, receipt) for letter, receipt in peeked if letter.message_id == message_id]
        try:
            if not found:
                return False
            letter, receipt = found[0]
            # The copy goes first: if the delete then fails the message exists twice, never zero times.
            self._client.send_message(QueueUrl=self.url, MessageBody=letter.body)
            self._client.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=receipt)
            return True
        finally:
            self._unhide([receipt for letter, receipt in peeked if letter.message_id != message_id])

    def purge(self) -> None:
        for url in (self.url, self.dlq_url):
            try:
                self._client.purge_queue(QueueUrl=url)
            except ClientError as err:
                if "PurgeQueueInProgress" in _code(err):
                    raise QueueError(f"{url}: SQS allows one purge a minute; try again shortly") from None
                raise

    # --- the parts ------------------------------------------------------------------------------------------
    def _peek_dead_letters(self, limit: int, stop_at: str | None = None) -> list[tuple[DeadLetter, str]]:
        """Receive up to ``limit`` dead letters (hidden for DLQ_PEEK_S) with their receipts; the caller makes
        them visible again. Long polls of 1 s: SQS's short poll may answer empty while messages exist."""
        seen: dict[str, tuple[DeadLetter, str]] = {}
        while len(seen) < limit and (stop_at is None or stop_at not in seen):
            answer = self._client.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=max(1, min(_checks.MAX_BATCH, limit - len(seen))),
                WaitTimeSeconds=1,
                VisibilityTimeout=DLQ_PEEK_S,
                MessageSystemAttributeNames=["SentTimestamp"],
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for msg in messages:
                attributes = msg.get("MessageAttributes", {})
                reason = attributes.get(_checks.DEAD_LETTER_REASON, {}).get("StringValue")
                sent_ms = msg.get("Attributes", {}).get("SentTimestamp")
                letter = DeadLetter(
                    message_id=msg["MessageId"],
                    body=msg["Body"],
                    # No reason attribute: SQS's redrive policy moved it (our dead_letter() always sets one).
                    reason=reason or f"received {self.max_receives} times without ack (redrive policy)",
                    sent_at=int(sent_ms) / 1000 if sent_ms else None,
                )
                seen[letter.message_id] = (letter, msg["ReceiptHandle"])
        return list(seen.values())

    def _unhide(self, receipts: list[str]) -> None:
        for start in range(0, len(receipts), _checks.MAX_BATCH):
            entries = [
                {"Id": str(n), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for n, receipt in enumerate(receipts[start : start + _checks.MAX_BATCH])
            ]
            try:
                self._client.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=entries)
            except ClientError as err:  # they come back after DLQ_PEEK_S anyway
                log.warning("%s: listed dead letters stay hidden a while: %s", self.dlq_name, _code(err))

    def _attributes(self, url: str) -> dict[str, str]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        return self._client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]

    def _check_owned(self, lease: Lease, what: str) -> None:
        if lease.queue_name != self.name:
            raise ValueError(f"lease is from queue {lease.queue_name}, not {self.name}")
        if lease.expired:
            raise LeaseExpired(f"{what} on {self.name}: the lease of message {lease.message_id} ran out")

    def _visibility(self, lease: Lease, timeout_s: int, what: str) -> None:
        self._check_owned(lease, what)
        try:
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=lease.receipt, VisibilityTimeout=timeout_s
            )
        except ClientError as err:
            if _lost_lease(err):
                raise LeaseExpired(
                    f"{what} on {self.name}: {_code(err)} for message {lease.message_id}"
                ) from None
            raise
