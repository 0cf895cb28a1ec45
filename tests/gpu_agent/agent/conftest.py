"""Fixtures for the agent tests: settings on tmp folders, real queues/blob stores, a fake IMDS, job builders,
and helpers that run agents (in a thread of this process, or as `python -m gpu_agent` processes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import AgentThread, EventLog

from cloud.messages import new_id
from cloud.queues import Queues, open_queues
from gpu_agent.agent import Agent
from storage.blobs import open_blob_store
from storage.blobs.base import BlobStore
from storage.settings import Settings, load_settings
from tests.gpu_agent.fake_imds import FakeImds


@pytest.fixture(scope="session")
def agent_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny models built once per session and loaded from disk by every agent (and agent process)."""
    return tmp_path_factory.mktemp("agent-models")


@pytest.fixture
def make_settings(tmp_path: Path, agent_model_cache: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "queue_url": f"sqlite:///{tmp_path / 'queue.db'}",
            "blob_url": f"file://{tmp_path / 'blobs'}",
            "agent_work_dir": str(tmp_path / f"agent-{new_id()[:6]}"),
            "model_cache_dir": str(agent_model_cache),
            "device": "cpu",
            "imds_url": "",
            "agent_metrics_port": 0,
            "agent_lease_s": 30,
            "agent_heartbeat_s": 5,
            "agent_poll_wait_s": 0.5,
            "agent_progress_every_s": 0,
            "agent_retry_delay_s": 0,
            "queue_max_receives": 2,
            "checkpoint_every_steps": 2,
            "render_size": 64,
            "render_steps": 2,
            # The tests' photos are synthetic (no faces); one test turns the re-check on to see it refuse them.
            "agent_check_photos": False,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def queues(settings: Settings) -> Iterator[Queues]:
    q = open_queues(settings)
    yield q
    q.close()


@pytest.fixture
def blobs(settings: Settings) -> BlobStore:
    return open_blob_store(settings)


@pytest.fixture
def fake_imds() -> Iterator[FakeImds]:
    server = FakeImds().start()
    yield server
    server.stop()


@pytest.fixture
def events(queues: Queues) -> EventLog:
    return EventLog(queues)


@pytest.fixture
def run_agent_thread() -> Iterator[Callable[..., AgentThread]]:
    started: list[AgentThread] = []

    def start(settings: Settings, **kwargs: Any) -> AgentThread:
        runner = AgentThread(Agent(settings, **kwargs)).start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop_event.set()
        runner.thread.join(60)
