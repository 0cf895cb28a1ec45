"""Agents as real `python -m gpu_agent` processes, training the tiny model for real: one is killed with SIGKILL
mid-training, one gets a spot notice from the fake IMDS; in both cases a second agent finishes the order from the
checkpoint with exactly one done event. The first runs on the embedded queue and local blobs, the second on SQS
and S3 (moto's server)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from agent_testkit import AgentThread, EventLog, start_agent_process, train_job

from cloud.messages import TrainJob, encode
from cloud.queues import open_queues
from gpu_agent.agent.engine_runner import EngineRunner
from storage import keys
from storage.blobs import open_blob_store
from storage.settings import Settings
from tests.gpu_agent.fake_imds import FakeImds

STEPS = 40  # checkpoints every 2 steps (the fixture's CHECKPOINT_EVERY_STEPS); long enough that a notice or a
# kill always lands mid-training, even on a fast quiet machine


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _finish_with_second_agent(
    settings: Settings,
    run_agent_thread: Callable[..., AgentThread],
    events: EventLog,
    job: TrainJob,
    queues: object,
    blobs: object,
) -> None:
    job_id = job.job_id
    second = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    done = events.wait_for(
        lambda e: e.job_id == job_id and e.kind == "done", 150, "done from the second agent"
    )
    second.stop()
    starts = [e for e in events.of(job_id, "started") if e.agent_id == second.agent.agent_id]
    assert len(starts) == 1
    assert starts[0].progress is not None and starts[0].progress.step > 0, "the second agent did not resume"
    assert len(events.of(job_id, "done")) == 1
    assert any(k.endswith("lora.safetensors") for k in done.output_keys)
    meta = json.loads(blobs.get(next(k for k in done.output_keys if k.endswith("meta.json"))))  # type: ignore[attr-defined]
    assert meta["resumed_from_step"] == starts[0].progress.step
    assert list(blobs.list(keys.checkpoint_prefix(job.user_id, job_id))) == []  # type: ignore[attr-defined]


@pytest.mark.timeout(280)
def test_kill_9_mid_training_then_another_agent_resumes_from_the_checkpoint(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    events: EventLog,
    run_agent_thread: Callable[..., AgentThread],
) -> None:
    settings = make_settings(agent_lease_s=5, agent_heartbeat_s=1)
    queues, blobs = open_queues(settings), open_blob_store(settings)
    job = train_job(blobs, steps=STEPS)
    queues.train.send(encode(job))
    log = tmp_path / "agent-a.log"
    first = start_agent_process(settings, log)
    try:
        first_news = events.wait_for(
            lambda e: e.job_id == job.job_id and e.kind in ("checkpoint", "failed"),
            150,
            f"a checkpoint from the first agent\n{_log_tail(log)}",
        )
        assert first_news.kind == "checkpoint", f"{first_news.error}\n{_log_tail(log)}"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert not events.of(job.job_id, "done")
    _finish_with_second_agent(settings, run_agent_thread, events, job, queues, blobs)
    queues.close()


@pytest.mark.timeout(280)
def test_spot_notice_checkpoints_and_releases_then_another_agent_finishes(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    moto_endpoint: str,
    unique_name: str,
    fake_imds: FakeImds,
    run_agent_thread: Callable[..., AgentThread],
) -> None:
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=unique_name)
    settings = make_settings(
        queue_url="sqs://",
        blob_url=f"s3://{unique_name}",
        aws_endpoint_url=moto_endpoint,
        queue_prefix=unique_name,
        imds_url=fake_imds.url,
        imds_poll_s=0.2,
        agent_lease_s=30,
        agent_heartbeat_s=5,
    )
    queues, blobs = open_queues(settings), open_blob_store(settings)
    events = EventLog(queues)
    job = train_job(blobs, steps=STEPS)
    queues.train.send(encode(job))
    log = tmp_path / "agent-spot.log"
    first = start_agent_process(settings, log, QUEUE_PREFIX=unique_name)
    try:
        first_news = events.wait_for(
            lambda e: e.job_id == job.job_id and e.kind in ("checkpoint", "failed"),
            150,
            f"a checkpoint from the first agent\n{_log_tail(log)}",
        )
        assert first_news.kind == "checkpoint", f"{first_news.error}\n{_log_tail(log)}"
        noticed = time.monotonic()
        fake_imds.terminate()
        preempted = events.wait_for(
            lambda e: e.job_id == job.job_id and e.kind == "preempted", 60, f"preempted\n{_log_tail(log)}"
        )
        released_in = time.monotonic() - noticed
        first.wait(30)  # a drained agent with nothing left exits on its own
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the agent did not exit after the notice\n{_log_tail(log)}") from None
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, _log_tail(log)
    assert released_in < 60, f"checkpoint + release took {released_in:.1f} s of the 120 s budget"
    assert preempted.progress is not None and preempted.progress.step > 0
    assert preempted.error is not None and f"step {preempted.progress.step}" in preempted.error.message
    assert blobs.exists(keys.checkpoint_prefix(job.user_id, job.job_id) + "LATEST")

    second = settings.model_copy(update={"imds_url": "", "agent_work_dir": str(tmp_path / "agent-b")})
    _finish_with_second_agent(second, run_agent_thread, events, job, queues, blobs)
    queues.close()


def test_sigterm_stops_an_idle_agent_process_cleanly(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(agent_metrics_port=port)
    log = tmp_path / "agent-term.log"
    agent = start_agent_process(settings, log)
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    health = json.loads(resp.read())
            except OSError:
                time.sleep(0.2)
        assert health is not None and health["status"] == "ok", _log_tail(log)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0, _log_tail(log)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert "SIGTERM" in log.read_text()
