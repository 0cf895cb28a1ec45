"""Fixtures shared by every test package: real servers started on 127.0.0.1 by the tests themselves."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slow import is_slow_file, is_slow_item

# boto3 needs credentials to sign requests, even against moto's server. These are dummies; nothing here
# ever talks to AWS.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)
# moto knows AWS's managed IAM policies (AWSBatchServiceRole, the ECS instance role's …) only when asked to.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

# Real face photos, in the repository with their sources (tests/data/faces/SOURCES.md).
FACES_DIR = Path(__file__).resolve().parent / "data" / "faces"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``-m "not slow"`` (./scripts/test --fast) a file or folder that is slow by rule is not even imported:
    importing torch and diffusers alone would take a good part of the minute the fast run has."""
    if config.getoption("markexpr", "").strip() == "not slow" and is_slow_file(collection_path):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the slow tests by the rule in tests/slow.py, so no test file has to carry the marker by hand."""
    for item in items:
        if is_slow_item(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's real HTTP server (S3, SQS, IAM, EC2, autoscaling …) on a free port of 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_batch_jobs_held(moto_endpoint: str) -> Iterator[None]:
    """moto would run a submitted AWS Batch job in Docker (absent here); held in SUBMITTED by moto's state manager
    instead, as a real queue holds a job until capacity boots, for the length of the test."""
    import requests

    url = f"{moto_endpoint}/moto-api/state-manager"
    held = {"model_name": "batch::job", "transition": {"progression": "manual", "times": 10**9}}
    requests.post(f"{url}/set-transition", json=held, timeout=5).raise_for_status()
    yield
    requests.post(f"{url}/unset-transition", json={"model_name": "batch::job"}, timeout=5)


@pytest.fixture
def unique_name() -> str:
    """A fresh name for buckets and queues, so tests sharing one moto server never collide."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES_DIR.is_dir():
        pytest.fail(f"test photos missing: {FACES_DIR}")
    return FACES_DIR
