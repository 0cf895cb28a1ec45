"""The agent's parts on their own: IMDS watcher, lease keeper, checkpoint sync, event throttle, health server."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from agent_testkit import render_job

from cloud.messages import Event, decode
from cloud.queues import Queues
from gpu_agent.agent.checkpoints import CheckpointSync
from gpu_agent.agent.lease import LeaseKeeper
from gpu_agent.agent.metrics import AgentMetrics, HealthServer
from gpu_agent.agent.report import Reporter
from gpu_agent.agent.spot import Drain, ImdsClient, SpotWatcher
from storage import keys
from storage.blobs.base import BlobStore
from tests.gpu_agent.fake_imds import FakeImds


def test_imds_client_uses_a_session_token(fake_imds: FakeImds) -> None:
    client = ImdsClient(fake_imds.url)
    assert client.get("spot/instance-action") is None
    assert client.get("instance-type") == "g5.xlarge"
    assert ("PUT", "/latest/api/token") in fake_imds.requests
    assert fake_imds.unauthorized == 0
    # A token the service forgot (expired) is replaced once, transparently.
    fake_imds.tokens.clear()
    assert client.get("instance-type") == "g5.xlarge"
    assert fake_imds.unauthorized == 1


def test_imds_client_ignores_proxies_from_the_environment(
    fake_imds: FakeImds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent whose environment names an HTTP proxy (for S3, say) still reaches the link-local metadata
    service directly, and never hands the session token to the proxy."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: a proxy that refuses every request
    client = ImdsClient(fake_imds.url)
    assert client.get("instance-type") == "g5.xlarge"
    assert fake_imds.unauthorized == 0


@pytest.mark.parametrize("notice", ["terminate", "rebalance"])
def test_spot_watcher_drains_on_a_notice(fake_imds: FakeImds, notice: str) -> None:
    drain = Drain()
    seen = []
    watcher = SpotWatcher(fake_imds.url, drain, poll_s=0.05, on_notice=lambda: seen.append(1)).start()
    try:
        time.sleep(0.3)
        assert not drain.requested
        assert watcher.instance_type == "g5.xlarge"
        fake_imds.terminate() if notice == "terminate" else fake_imds.recommend_rebalance()
        assert drain.wait(5), "the watcher missed the notice"
        assert ("spot interruption" if notice == "terminate" else "rebalance") in (drain.reason or "")
        deadline = time.monotonic() + 2
        while not seen and time.monotonic() < deadline:  # the callback runs just after the flag is raised
            time.sleep(0.01)
        assert seen == [1]
    finally:
        watcher.stop()


def test_spot_watcher_survives_an_unreachable_imds() -> None:
    drain = Drain()
    watcher = SpotWatcher("http://127.0.0.1:9", drain, poll_s=0.05).start()  # discard port: refused
    time.sleep(0.3)
    watcher.stop()
    assert not drain.requested


def test_lease_keeper_renews_and_reports_a_lost_lease(queues: Queues) -> None:
    queues.render.send("hello")
    (lease,) = queues.render.receive(1, lease_s=2)
    lost = threading.Event()
    with LeaseKeeper(queues.render, lease, lease_s=2, heartbeat_s=0.3, on_lost=lost.set) as keeper:
        time.sleep(2.5)  # longer than the lease: only the renewals keep it
        assert keeper.renewals >= 3
        assert queues.render.receive(1, wait_s=0) == []
        queues.render.purge()  # the message is gone: the next renewal must fail
        assert lost.wait(3)
        assert keeper.lost


def test_lease_keeper_refuses_a_heartbeat_as_long_as_the_lease(queues: Queues) -> None:
    queues.render.send("x")
    (lease,) = queues.render.receive(1)
    with pytest.raises(ValueError, match="heartbeat"):
        LeaseKeeper(queues.render, lease, lease_s=10, heartbeat_s=10, on_lost=lambda: None)


def _fake_checkpoint(folder: Path, step: int) -> None:
    name = f"step-{step:08d}"
    (folder / name).mkdir(parents=True)
    (folder / name / "lora.safetensors").write_bytes(b"w" * step)
    (folder / name / "state.json").write_text(json.dumps({"step": step}))
    (folder / "LATEST").write_text(name)


def test_checkpoint_sync_round_trip(blobs: BlobStore, tmp_path: Path) -> None:
    local = tmp_path / "a"
    prefix = keys.checkpoint_prefix("u1", "job1")
    sync = CheckpointSync(blobs, prefix, local)
    assert sync.upload_if_new() is None
    _fake_checkpoint(local, 2)
    step, _seconds = sync.upload_if_new()  # type: ignore[misc]
    assert step == 2
    assert sync.upload_if_new() is None  # nothing new
    _fake_checkpoint(local, 4)
    assert sync.upload_if_new()[0] == 4  # type: ignore[index]
    stored = sorted(blobs.list(prefix))
    assert stored == [
        "users/u1/checkpoints/job1/LATEST",
        "users/u1/checkpoints/job1/step-00000004/lora.safetensors",
        "users/u1/checkpoints/job1/step-00000004/state.json",
    ]

    other = CheckpointSync(blobs, prefix, tmp_path / "b")
    assert other.download() == 4
    assert (tmp_path / "b" / "LATEST").read_text() == "step-00000004"
    assert (tmp_path / "b" / "step-00000004" / "lora.safetensors").read_bytes() == b"w" * 4
    assert CheckpointSync(blobs, keys.checkpoint_prefix("u1", "nojob"), tmp_path / "c").download() == 0


def test_checkpoint_sync_ignores_a_hostile_latest(blobs: BlobStore, tmp_path: Path) -> None:
    blobs.put("users/u1/checkpoints/job2/LATEST", b"../../etc")
    assert CheckpointSync(blobs, keys.checkpoint_prefix("u1", "job2"), tmp_path / "d").download() == 0
    assert not (tmp_path / "d" / "LATEST").exists()


def test_reporter_throttles_progress(queues: Queues, blobs: BlobStore) -> None:
    job = render_job()
    reporter = Reporter(queues.events, blobs, job, agent_id="a1", progress_every_s=60)
    reporter.started(0, 10)
    assert reporter.progress(1, 10) is not None
    assert reporter.progress(2, 10) is None  # inside the interval
    forced = reporter.progress(10, 10, preview_jpeg=b"\xff\xd8jpeg", force=True)
    assert forced is not None and forced.progress is not None
    assert forced.progress.preview_key == keys.preview_key(job.user_id, job.job_id, 10)
    assert blobs.get(forced.progress.preview_key) == b"\xff\xd8jpeg"
    sent = [decode(lease.body, Event) for lease in queues.events.receive(10)]
    assert [e.kind for e in sent] == ["started", "progress", "progress"]
    assert all(e.agent_id == "a1" and e.job_kind == "render" for e in sent)


def test_health_server_serves_health_and_metrics() -> None:
    metrics = AgentMetrics()
    metrics.jobs.labels("train", "done").inc()
    state = {"ok": True}
    server = HealthServer(
        metrics, lambda: (state["ok"], {"status": "ok" if state["ok"] else "draining"})
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(base + "/healthz") as resp:
            assert json.loads(resp.read()) == {"status": "ok"}
        with urllib.request.urlopen(base + "/metrics") as resp:
            text = resp.read().decode()
        assert 'photogen_agent_jobs_total{kind="train",result="done"} 1.0' in text
        state["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/healthz")
        assert err.value.code == 503
    finally:
        server.stop()


def test_the_renderer_keys_a_lora_by_the_model_the_job_names() -> None:
    """Render jobs carry their model's id; a job queued before they did is still recognised by its key."""
    from gpu_agent.agent.engine_runner import _model_id

    key = keys.model_key("42", "m-from-key")
    local = Path("/tmp/loras/42/0123abcd.safetensors")
    named = render_job().model_copy(update={"model_id": "m-named", "model_keys": [key]})
    assert _model_id(named, local) == "m-named"
    old = render_job().model_copy(update={"model_id": None, "model_keys": [key]})
    assert _model_id(old, local) == "m-from-key"
