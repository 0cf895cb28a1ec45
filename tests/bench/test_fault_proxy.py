"""bench/_system.FaultProxy (the chaos benchmark's stand-in for AWS's 5xx/throttling answers): boto3
recognises its errors as retryable, so the product's own clients get through a faulty proxy; with every
request faulted the error is one AWS would send (S3 ``SlowDown``/``InternalError``, SQS
``ThrottlingException``/…)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloud.queues.sqs import make_client
from storage.blobs.s3 import make_s3_client

_PATH = Path(__file__).resolve().parents[2] / "bench" / "_system.py"
_spec = importlib.util.spec_from_file_location("bench_system", _PATH)
assert _spec and _spec.loader
_system = importlib.util.module_from_spec(_spec)
sys.modules["bench_system"] = _system
_spec.loader.exec_module(_system)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[object]:
    proxy = _system.FaultProxy(moto_endpoint, share=0.3, seed=3).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_the_products_clients_get_through_a_faulty_proxy(
    proxy: object, moto_endpoint: str, unique_name: str
) -> None:
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint).create_bucket(Bucket=unique_name)
    s3 = make_s3_client("us-east-1", proxy.url)
    sqs = make_client("us-east-1", proxy.url)
    queue_url = sqs.create_queue(QueueName=unique_name)["QueueUrl"]
    for i in range(15):
        s3.put_object(Bucket=unique_name, Key=f"k{i}", Body=f"v{i}".encode())
        assert s3.get_object(Bucket=unique_name, Key=f"k{i}")["Body"].read() == f"v{i}".encode()
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    received = set()
    while len(received) < 15:
        for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            received.add(m["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert received == {f"m{i}" for i in range(15)}
    assert any(k.startswith("s3_") for k in proxy.faults) and any(k.startswith("sqs_") for k in proxy.faults)
    assert sum(proxy.faults.values()) >= 10  # ~30 % of well over 60 requests


def test_every_fault_is_an_aws_error_the_sdk_retries(moto_endpoint: str, unique_name: str) -> None:
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_endpoint).create_bucket(Bucket=unique_name)
    proxy = _system.FaultProxy(moto_endpoint, share=1.0, seed=1).start()
    config = Config(retries={"mode": "standard", "max_attempts": 2})  # 2 retries after the try
    try:
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=proxy.url, config=config)
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=proxy.url, config=config)
        codes = set()
        for _ in range(6):
            for call in (lambda: s3.head_bucket(Bucket=unique_name), lambda: sqs.list_queues()):
                with pytest.raises(ClientError) as err:
                    call()
                meta = err.value.response["ResponseMetadata"]
                assert meta["RetryAttempts"] == 2  # retried: boto3 took it for a transient error
                codes.add(err.value.response["Error"].get("Code") or str(meta["HTTPStatusCode"]))
    finally:
        proxy.stop()
    assert codes & {"SlowDown", "503"} and codes & {
        "ThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
    }
