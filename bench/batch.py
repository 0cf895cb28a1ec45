"""Mixed-member batch: four members' renders (four different LoRAs) in one denoising batch vs one after another.

    python bench/batch.py [--quick] [--full] [--runs N] [--members N] [--size PX] [--steps N] [--device cpu|cuda]

Side by side in one run, on one warm Renderer with every member's LoRA resident (a busy agent's steady state,
so the sequential renders pay only set_adapters between jobs, not a load):
  sequential — Renderer.render for each member in turn (the agent before mixed batches);
  batch      — engine/batch.render_batch with all members at once (each row its own LoRA).
The two alternate (order flipped every run), so a busy machine slows both alike; figures are medians.
Throughput ratio = sequential time / batch time for the same pictures. The pictures are compared too
(max_pixel_diff: the worst channel difference, 0-255, between a member's batch picture and its render alone).

--quick: the tiny random SD-1.x model at 64 px, 8 steps (about a minute on 2 CPU cores). Without --quick the
run adds a randomly initialised full-size SD-1.5-shaped model (bench/render.py's) at --size (CPU default 256
px, 4 steps). --full: only the full-size model at 512 px, 20 steps (the GPU figure; bench/gpu.sh runs
``python bench/batch.py --device cuda --full``). The last line is one JSON object with the figures, the goal
and goal_met (>= 1.3x on a CPU, >= 3x on a GPU, judged on the last model run).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import numpy as np
import torch
from _args import count, device
from render import full_size_sd15, save_loras, timed

from gpu_agent.engine.batch import BatchMember, render_batch
from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import LoraRef, RenderRequest

GOAL_CPU, GOAL_GPU = 1.3, 3.0
PROMPTS = [
    "photo of {subject}",
    "portrait of {subject} in rome",
    "headshot of {subject}",
    "{subject} at dusk",
]


def members_for(loras: list[LoraRef], size: int, steps: int) -> list[BatchMember]:
    return [
        BatchMember(
            RenderRequest(
                PROMPTS[i % len(PROMPTS)],
                subject="sks man",
                negative_prompt="blurry",
                seed=100 + i,
                width=size,
                height=size,
                steps=steps,
                guidance=7.0,
            ),
            lora,
        )
        for i, lora in enumerate(loras)
    ]


def measure(
    label: str, pipe: Any, size: int, steps: int, members: int, runs: int, dev: str
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="photogen-bench-batch-") as tmp:
        root = Path(tmp)
        model_dir = root / "base"
        pipe.save_pretrained(str(model_dir), safe_serialization=True)
        rank = 4 if label == "tiny-sd" else 16
        loras = save_loras(pipe, root, members, rank, text_encoder=True)
        del pipe
        gc.collect()
        renderer = Renderer(str(model_dir), device=dev, max_resident=members)
        batch = members_for(loras, size, steps)
        for lora in loras:
            renderer.load(lora)
        # warm-up: first-call allocations and kernel selection, alone and batched
        alone = {id(m): renderer.render(m.request, m.lora) for m in batch}
        batched = render_batch(renderer, batch)
        worst = max(
            int(np.abs(np.asarray(a[0].image, np.int16) - np.asarray(b[0].image, np.int16)).max())  # type: ignore[index]
            for a, b in zip((alone[id(m)] for m in batch), batched, strict=True)
        )
        times: dict[str, list[float]] = {"sequential": [], "batch": []}

        def sequential() -> None:
            for m in batch:
                renderer.render(m.request, m.lora)

        for run in range(runs):
            order = ("sequential", "batch") if run % 2 == 0 else ("batch", "sequential")
            for what in order:
                times[what].append(
                    timed(sequential if what == "sequential" else lambda: render_batch(renderer, batch))
                )
    seq, bat = statistics.median(times["sequential"]), statistics.median(times["batch"])
    return {
        "model": label,
        "size": f"{size}x{size}",
        "steps": steps,
        "members": members,
        "sequential_s": round(seq, 4),
        "batch_s": round(bat, 4),
        "throughput_ratio": round(seq / bat, 2),
        "pictures_per_s_sequential": round(members / seq, 3),
        "pictures_per_s_batch": round(members / bat, 3),
        "max_pixel_diff": worst,
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model only (about a minute on 2 CPU cores)")
    ap.add_argument(
        "--full", action="store_true", help="full-size SD-1.5 shapes only, 512 px, 20 steps (GPU)"
    )
    ap.add_argument("--runs", type=count(1), default=None, help="timed runs of each side")
    ap.add_argument(
        "--members", type=count(2), default=4, help="members (each with their own LoRA) per batch"
    )
    ap.add_argument("--size", type=count(64), default=None, help="full-size model's render side in px")
    ap.add_argument("--steps", type=count(1), default=None, help="full-size model's denoising steps")
    ap.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=count(1), default=None, help="torch CPU threads (default: torch's own)")
    args = ap.parse_args()
    if args.quick and args.full:
        ap.error("--quick and --full exclude each other")
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    results = []
    tiny = load_base_pipeline("tiny-sd", device=torch.device("cpu"), dtype=None, cache_dir=None)
    tokenizer = tiny.tokenizer
    if not args.full:
        results.append(measure("tiny-sd", tiny, 64, 8, args.members, args.runs or 3, args.device))
    del tiny
    if not args.quick:
        size = args.size or (512 if args.full or gpu else 256)
        steps = args.steps or (20 if args.full or gpu else 4)
        label = "random full-size SD-1.5 shapes"
        pipe = full_size_sd15(tokenizer)
        results.append(measure(label, pipe, size, steps, args.members, args.runs or 3, args.device))
    for r in results:
        print(
            f"{r['model']:>32}  {r['size']:>8} {r['steps']:>2} steps  {r['members']} members: sequential "
            f"{r['sequential_s']:.3f}s  batch {r['batch_s']:.3f}s  ({r['throughput_ratio']}x)  "
            f"max pixel diff {r['max_pixel_diff']}"
        )
    judged = results[-1]
    goal = GOAL_GPU if gpu else GOAL_CPU
    summary = {
        "bench": "batch",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if gpu else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": results,
        "judged_on": judged["model"],
        "throughput_ratio": judged["throughput_ratio"],
        "goal": f"mixed-member batch of {args.members} >= {goal}x the throughput of sequential renders "
        f"({'GPU' if gpu else 'CPU'})",
        "goal_met": judged["throughput_ratio"] >= goal,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
