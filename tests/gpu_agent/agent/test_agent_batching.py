"""Mixed-member batches through the agent (agent/batching.py): gathered render jobs share one denoising batch
while each keeps its own lease, events, pictures and failure. The real agent, the real engine on the tiny
model, the embedded SQLite queue and file blob store; RenderBatcher's rules on plain threads."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from agent_testkit import EventLog, render_job
from PIL import Image

from cloud.messages import RenderJob, encode
from cloud.queues import Queues
from gpu_agent.agent.batching import RenderBatcher
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.engine.tiny import save_tiny_lora
from storage import keys
from storage.blobs.base import BlobStore
from storage.settings import Settings


def member_job(blobs: BlobStore, lora: bytes, seed: int) -> RenderJob:
    job = render_job(seed=seed, negative_prompt="blurry")
    model = f"m{job.job_id[1:9]}"
    blobs.put(keys.model_key(job.user_id, model), lora, content_type="application/octet-stream")
    return job.model_copy(update={"model_id": model, "model_keys": [keys.model_key(job.user_id, model)]})


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_a_corrupt_lora_fails_only_its_job_in_a_mixed_batch(
    settings: Settings,
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    tmp_path: Path,
    run_agent_thread: Any,
) -> None:
    # The default settings: batching is on (RENDER_BATCH_MAX 4, RENDER_BATCH_WAIT_MS 100).
    a = save_tiny_lora("tiny-sd", tmp_path / "a" / "lora.safetensors", seed=1).read_bytes()
    c = save_tiny_lora("tiny-sd", tmp_path / "c" / "lora.safetensors", seed=3).read_bytes()
    jobs = [member_job(blobs, a, 11), member_job(blobs, b"\x00" * 200, 12), member_job(blobs, c, 13)]
    for job in jobs:  # all three wait in the queue: the agent gathers them
        queues.render.send(encode(job))
    runner = EngineRunner(settings)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    done = [
        events.wait_for(lambda e, j=j: e.job_id == j.job_id and e.kind == "done", 120, "done")
        for j in jobs[::2]
    ]
    failed = events.wait_for(lambda e: e.job_id == jobs[1].job_id and e.kind == "failed", 60, "failed")
    agent.stop()

    assert runner.batcher is not None and 3 in runner.batcher.batches  # one denoising batch for all three
    assert failed.error is not None and failed.error.code == "model_unusable"
    assert "safetensors" not in failed.error.message and "/" not in failed.error.message
    assert not blobs.exists(keys.render_key(jobs[1].user_id, jobs[1].job_id, 0))
    for job, event in zip(jobs[::2], done, strict=True):
        assert event.render_keys == [keys.render_key(job.user_id, job.job_id, 0)]
        assert events.of(job.job_id)[0].kind == "started"
    # A member's picture is its job rendered alone (same tolerance as the engine's test: 2 levels).
    path = tmp_path / "a.safetensors"
    path.write_bytes(a)
    alone = runner.render(jobs[0], [path], None, progress=lambda *_: None, should_stop=lambda: False)
    diff = np.abs(pixels(blobs.get(done[0].render_keys[0])) - pixels(alone.pngs[0])).max()
    assert diff <= 2, diff
    assert queues.render.depth().backlog == 0


# --- RenderBatcher's rules ----------------------------------------------------------------------------------


def run_calls(batcher: RenderBatcher, calls: list[tuple[str, int]]) -> list[Any]:
    runs: list[list[int]] = []
    results: list[Any] = [None] * len(calls)

    def run(members: Any) -> list[Any]:
        runs.append(list(members))
        if -1 in members:
            raise MemoryError("out of memory")
        return [m * 10 for m in members]

    def call(n: int, key: str, member: int) -> None:
        try:
            results[n] = batcher.submit(key, member, run)[0]
        except Exception as err:
            results[n] = err
        finally:
            batcher.finished()

    threads = [threading.Thread(target=call, args=(n, *c)) for n, c in enumerate(calls)]
    batcher.gathered(len(threads))
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join(10)
    return [sorted(r) for r in runs] + [results]


def test_compatible_calls_join_up_to_the_maximum_and_others_run_apart() -> None:
    batcher = RenderBatcher(max_size=2, wait_s=5)
    *runs, results = run_calls(batcher, [("k", 1), ("k", 2), ("k", 3), ("other", 4)])
    assert sorted(runs) == [[1, 2], [3], [4]]  # the gathered jobs all arrived: nobody waited the 5 s out
    assert results == [10, 20, 30, 40]


def test_a_lone_call_does_not_wait_and_a_failed_batch_fails_each_member() -> None:
    batcher = RenderBatcher(max_size=4, wait_s=5)
    started = time.monotonic()
    assert batcher.submit("k", 7, lambda ms: [m + 1 for m in ms])[0] == 8  # no gathered job: no waiting
    assert time.monotonic() - started < 1
    *_, results = run_calls(batcher, [("k", 1), ("k", -1)])
    assert all(isinstance(r, MemoryError) for r in results)


def test_the_leader_waits_at_most_the_window() -> None:
    batcher = RenderBatcher(max_size=4, wait_s=0.2)
    started = time.monotonic()
    batcher.gathered(2)  # a second gathered job that never renders (e.g. its model was missing)
    assert batcher.submit("k", 1, lambda ms: list(ms))[0] == 1
    assert 0.15 < time.monotonic() - started < 3


def test_settings_turn_batching_off(make_settings: Any) -> None:
    assert EngineRunner(make_settings(render_batch_max=1)).batcher is None
    assert EngineRunner(make_settings()).batcher is not None  # on by default


def test_each_member_is_charged_its_share_of_the_batch_time() -> None:
    batcher = RenderBatcher(max_size=4, wait_s=5)
    batcher.gathered(2)
    shares: list[float] = []

    def run(members: Any) -> list[Any]:
        time.sleep(0.4)
        return list(members)

    def call(member: int) -> None:
        shares.append(batcher.submit("k", member, run)[1])
        batcher.finished()

    threads = [threading.Thread(target=call, args=(m,)) for m in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(shares) == 2 and all(0.19 < s < 0.35 for s in shares)  # 0.4 s over two members, not 0.4 each


def test_health_lists_every_job_of_a_batch_and_stays_busy_until_the_last_ends(
    settings: Settings, queues: Queues, blobs: BlobStore
) -> None:
    from gpu_agent.agent.worker import Agent

    agent = Agent(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    agent._job_started("render", "j1")
    agent._job_started("render", "j2")
    agent._job_ended("j1")  # a batch's members end one by one
    _, health = agent._health()
    assert health["state"] == "render" and health["job_ids"] == ["j2"] and health["job_id"] == "j2"
    assert agent.metrics.busy._value.get() == 1
    agent._job_ended("j2")
    _, health = agent._health()
    assert health["state"] == "idle" and health["job_ids"] == [] and health["job_id"] is None
    assert agent.metrics.busy._value.get() == 0
