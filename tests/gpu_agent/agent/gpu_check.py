"""Device check of the agent on a real CUDA GPU (not collected by pytest; run by hand where a GPU exists):

    python tests/gpu_agent/agent/gpu_check.py OUT_DIR

1. a TrainJob (tiny-sd, with a first render) through the Agent on CUDA: events, outputs, meta says cuda;
2. a drain (as on a spot notice) mid-training: checkpoint + release time, then a second agent resumes from it;
3. a REAL CUDA out-of-memory: the process's GPU memory is capped between what a 1-image and a 4-image render
   need, so the 4-image job runs out of memory and the agent's memory-saving retry (one image at a time) succeeds.

Prints one JSON object as its last line and writes it to OUT_DIR/gpu_check.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from agent_testkit import EventLog, render_job, train_job

from cloud.messages import encode
from cloud.queues import open_queues
from gpu_agent.agent import Agent
from gpu_agent.agent.engine_runner import EngineRunner
from storage.blobs import open_blob_store
from storage.settings import load_settings


class Recording(EngineRunner):
    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.render_calls: list[bool] = []
        self.errors: list[str] = []

    def render(self, job: Any, loras: Any, source: Any, **kw: Any) -> Any:
        self.render_calls.append(bool(kw.get("low_memory")))
        try:
            return super().render(job, loras, source, **kw)
        except Exception as err:
            self.errors.append(type(err).__name__)
            raise


def start(agent: Agent) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def main(out_dir: Path, device: str = "cuda") -> dict[str, Any]:
    cpu = device == "cpu"  # a smoke run of this script where there is no GPU: small numbers, no OOM part
    root = Path(tempfile.mkdtemp(prefix="agent-gpu-"))
    settings = load_settings(
        queue_url=f"sqlite:///{root / 'queue.db'}",
        blob_url=f"file://{root / 'blobs'}",
        agent_work_dir=str(root / "work-a"),
        agent_id="gpu-a",
        model_cache_dir=str(root / "models"),
        device=device,
        imds_url="",
        agent_metrics_port=0,
        agent_lease_s=30,
        agent_heartbeat_s=5,
        agent_poll_wait_s=0.5,
        agent_progress_every_s=1,
        agent_retry_delay_s=0,
        checkpoint_every_steps=2 if cpu else 50,
        render_size=64 if cpu else 512,
        render_steps=4,
    )
    queues, blobs = open_queues(settings), open_blob_store(settings)
    events = EventLog(queues)
    result: dict[str, Any] = {
        "gpu": "none" if cpu else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }

    # 1. a whole training on the GPU
    runner = Recording(settings)
    agent = Agent(settings, runner=runner, queues=queues, blobs=blobs)
    thread, _stop = start(agent)
    job = train_job(blobs, steps=4 if cpu else 100, renders=1)
    t0 = time.monotonic()
    queues.train.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 300, "train done")
    meta = json.loads(blobs.get(next(k for k in done.output_keys if k.endswith("meta.json"))))
    result["train"] = {
        "seconds": round(time.monotonic() - t0, 2),
        "outputs": len(done.output_keys),
        "device": meta["device"],
        "gpu_seconds": done.gpu_seconds,
        "kinds": sorted({e.kind for e in events.of(job.job_id)}),
    }

    # 2. drain mid-training, then resume on a second agent
    long_job = train_job(blobs, steps=12 if cpu else 1500)
    queues.train.send(encode(long_job))
    events.wait_for(lambda e: e.job_id == long_job.job_id and e.kind == "checkpoint", 300, "checkpoint")
    t1 = time.monotonic()
    agent.drain.request("gpu check: simulated spot notice")
    pre = events.wait_for(lambda e: e.job_id == long_job.job_id and e.kind == "preempted", 120, "preempted")
    released_s = time.monotonic() - t1
    thread.join(60)
    settings_b = settings.model_copy(update={"agent_work_dir": str(root / "work-b"), "agent_id": "gpu-b"})
    runner_b = Recording(settings_b)
    agent_b = Agent(settings_b, runner=runner_b, queues=queues, blobs=blobs)
    thread_b, stop_b = start(agent_b)
    done_b = events.wait_for(lambda e: e.job_id == long_job.job_id and e.kind == "done", 300, "resumed done")
    starts = [e for e in events.of(long_job.job_id, "started") if e.agent_id == agent_b.agent_id]
    result["drain"] = {
        "checkpoint_and_release_s": round(released_s, 3),
        "paused_at": pre.progress.step if pre.progress else None,
        "resumed_at": starts[0].progress.step if starts and starts[0].progress else None,
        "done_events": len(events.of(long_job.job_id, "done")),
        "gpu_seconds_b": done_b.gpu_seconds,
    }

    if cpu:
        stop_b.set()
        thread_b.join(60)
        return result

    # 3. a real CUDA OOM: calibrate the memory a 1- and a 4-image render take on the loaded renderer
    renderer = runner_b.renderer("tiny-sd")
    from gpu_agent.engine.render_types import RenderRequest

    def peak(n: int) -> int:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        renderer.render(
            RenderRequest(
                prompt="a photo of {subject}", subject="sks person", n=n, width=1024, height=1024, steps=2
            )
        )  # type: ignore[attr-defined]
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_reserved())

    one, four = peak(1), peak(4)
    total = torch.cuda.get_device_properties(0).total_memory
    cap = (one + four) // 2
    result["oom"] = {
        "reserved_1_image_mb": one >> 20,
        "reserved_4_images_mb": four >> 20,
        "cap_mb": cap >> 20,
    }
    if four - one > 64 << 20:
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(cap / total, 0)
        calls_before = len(runner_b.render_calls)
        rjob = render_job(count=4, width=1024, height=1024, steps=2)
        queues.render.send(encode(rjob))
        outcome = events.wait_for(
            lambda e: e.job_id == rjob.job_id and e.kind in ("done", "failed"), 300, "oom render outcome"
        )
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        result["oom"].update(
            {
                "outcome": outcome.kind,
                "images": len(outcome.output_keys),
                "calls_low_memory": runner_b.render_calls[calls_before:],
                "errors": runner_b.errors,
                "error": outcome.error.code if outcome.error else None,
            }
        )
    else:
        result["oom"]["outcome"] = "not calibrated: the two renders need about the same memory"
    stop_b.set()
    thread_b.join(60)
    result["ok"] = (
        result["train"]["device"] == device
        and result["drain"]["done_events"] == 1
        and (result["drain"]["resumed_at"] or 0) > 0
        and result["oom"].get("outcome") == "done"
        and result["oom"].get("calls_low_memory") == [False, True]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "."), *sys.argv[2:3])))
