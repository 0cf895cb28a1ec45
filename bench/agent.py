"""Agent benchmark: what the runtime adds around the engine, and how fast it gets off a machine that is going away.

    python bench/agent.py --quick

1. overhead: N render jobs through the Agent (embedded SQLite queue, local blob store, events) with a runner that
   returns a stored PNG at once, side by side with the same N runner calls alone: seconds the agent adds a job.
2. drain: a real tiny-sd training through the Agent on this CPU; after its first checkpoint a drain is requested
   (what a spot notice or SIGTERM does); the time until the checkpoint is stored, the preempted event sent and the
   message released. AWS gives two minutes.

Last line: one JSON object with the figures, the goals and goal_met.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
from PIL import Image

from cloud.messages import Event, RenderJob, TrainJob, TrainParams, decode, encode, new_id
from cloud.queues import open_queues
from gpu_agent.agent import Agent, RenderOutcome
from storage import keys
from storage.blobs import open_blob_store
from storage.settings import load_settings

GOAL_OVERHEAD_S = 0.5
GOAL_DRAIN_S = 30.0


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(out, "PNG")
    return out.getvalue()


class InstantRunner:
    """Returns a finished picture at once: the engine's share is zero, so what is measured is the agent's."""

    warm = True

    def __init__(self) -> None:
        self.png = _png()

    def train(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def render(self, job: RenderJob, loras: Any, source: Any, **kwargs: Any) -> RenderOutcome:
        kwargs["progress"](1, 1, None)
        return RenderOutcome(pngs=[self.png] * job.count)


def _wait_events(queues: Any, check: Any, timeout: float) -> list[Event]:
    got: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lease in queues.events.receive(10, wait_s=0.2, lease_s=30):
            event = decode(lease.body, Event)
            queues.events.ack(lease)
            got.append(event)
        if check(got):
            return got
    raise TimeoutError(f"events did not arrive in {timeout} s: {[(e.job_id, e.kind) for e in got]}")


def _render_job() -> RenderJob:
    return RenderJob(
        job_id=f"r{new_id()[:12]}",
        order_id=f"o{new_id()[:8]}",
        user_id=f"u{new_id()[:8]}",
        base_model="tiny-sd",
        prompt="a photo of {subject}",
        subject="sks person",
        width=64,
        height=64,
    )


def overhead(root: Path, jobs: int) -> dict[str, float]:
    settings = load_settings(
        queue_url=f"sqlite:///{root / 'q1.db'}",
        blob_url=f"file://{root / 'b1'}",
        agent_work_dir=str(root / "w1"),
        imds_url="",
        agent_metrics_port=0,
        agent_poll_wait_s=0.2,
        agent_progress_every_s=0,
    )
    queues, blobs = open_queues(settings), open_blob_store(settings)
    runner = InstantRunner()
    started = time.perf_counter()
    for _ in range(jobs):
        job = _render_job()
        runner.render(job, [], None, progress=lambda *a: None, should_stop=lambda: False)
    alone = time.perf_counter() - started

    agent = Agent(settings, runner=runner, queues=queues, blobs=blobs)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    sent = [_render_job() for _ in range(jobs)]
    started = time.perf_counter()
    for job in sent:
        queues.render.send(encode(job))
    ids = {j.job_id for j in sent}
    _wait_events(queues, lambda got: {e.job_id for e in got if e.kind == "done"} >= ids, 120)
    through_agent = time.perf_counter() - started
    stop.set()
    thread.join(30)
    return {
        "jobs": jobs,
        "runner_alone_s": round(alone, 4),
        "through_agent_s": round(through_agent, 3),
        "agent_overhead_per_job_s": round((through_agent - alone) / jobs, 4),
    }


def drain(root: Path, steps: int) -> dict[str, float]:
    settings = load_settings(
        queue_url=f"sqlite:///{root / 'q2.db'}",
        blob_url=f"file://{root / 'b2'}",
        agent_work_dir=str(root / "w2"),
        model_cache_dir=str(root / "models"),
        device="cpu",
        imds_url="",
        agent_metrics_port=0,
        agent_poll_wait_s=0.2,
        checkpoint_every_steps=2,
        agent_check_photos=False,
    )
    queues, blobs = open_queues(settings), open_blob_store(settings)
    user, order = f"u{new_id()[:8]}", f"o{new_id()[:8]}"
    photo_keys = []
    for n in range(3):
        key = keys.photo_key(user, order, n)
        blobs.put(key, _png())
        photo_keys.append(key)
    job = TrainJob(
        job_id=f"j{new_id()[:12]}",
        order_id=order,
        user_id=user,
        model_id=f"m{new_id()[:8]}",
        photo_keys=photo_keys,
        subject_token="sks",
        class_word="person",
        base_model="tiny-sd",
        params=TrainParams(
            steps=steps, resolution=64, rank=4, prior_preservation=False, train_text_encoder=False
        ),
    )
    agent = Agent(settings, queues=queues, blobs=blobs)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    queues.train.send(encode(job))
    _wait_events(queues, lambda got: any(e.kind == "checkpoint" for e in got), 110)
    noticed = time.perf_counter()
    agent.drain.request("bench: simulated spot notice")
    got = _wait_events(queues, lambda got: any(e.kind == "preempted" for e in got), 110)
    released = time.perf_counter() - noticed
    thread.join(30)
    visible = queues.train.depth().visible
    paused = next(e for e in got if e.kind == "preempted").progress
    return {
        "checkpoint_and_release_s": round(released, 3),
        "paused_at_step": paused.step if paused else -1,
        "message_visible_again": visible,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs and steps (within 2 minutes here)")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        root = Path(tmp)
        over = overhead(root, 20 if args.quick else 100)
        drained = drain(root, 40 if args.quick else 200)
    result = {
        "bench": "agent",
        **over,
        **drained,
        "goal": f"agent overhead < {GOAL_OVERHEAD_S} s a job; checkpoint + release < {GOAL_DRAIN_S} s of "
        "the 120 s spot budget",
        "goal_met": over["agent_overhead_per_job_s"] < GOAL_OVERHEAD_S
        and drained["checkpoint_and_release_s"] < GOAL_DRAIN_S
        and drained["message_visible_again"] == 1,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
