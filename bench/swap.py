"""LoRA swap cost against one render: a warm Renderer, every resident slot taken, a member's LoRA it has never
seen hot-swapped in, beside a 20-step render (512 px for SD-1.5, 1024 px for SDXL).

    python bench/swap.py --device cuda --model sd15     # full-size random SD-1.5 shapes (bench/shapes.py)
    python bench/swap.py --device cuda --model sdxl     # full-size random SDXL shapes
    python bench/swap.py --dry --model sdxl             # the tiny model of that family, 2 steps, on a CPU

The timing loop is bench/render.py's warm(): base renders and swaps alternate, figures are medians. LoRAs are
shaped as the trainer writes them (rank 16 on the UNet's attention projections and the first text encoder's).
Goal: the swap is at most 10 % of a render. One JSON line: the figures, the goal and goal_met.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import shapes
import torch
from _args import count, device
from render import save_loras, warm

from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.render_types import RenderRequest

GOAL_SWAP_SHARE = 0.10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=shapes.FULL, default="sd15")
    ap.add_argument("--dry", action="store_true", help="tiny model of --model's family, 2 steps, 64 px")
    ap.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs", type=count(1), default=None, help="swaps timed (default 3; 1 with --dry)")
    ap.add_argument("--steps", type=count(1), default=None, help="denoising steps (default 20)")
    ap.add_argument("--size", type=count(64), default=None, help="px (default 512; SDXL 1024)")
    args = ap.parse_args()

    model = shapes.TINY[args.model] if args.dry else shapes.model_path(args.model)
    size = args.size or (64 if args.dry else 1024 if args.model == "sdxl" else 512)
    steps = args.steps or (2 if args.dry else 20)
    runs = args.runs or (1 if args.dry else 3)
    request = RenderRequest(
        "photo of {subject}", subject="sks man", width=size, height=size, steps=steps, seed=1
    )
    with tempfile.TemporaryDirectory(prefix="photogen-bench-swap-") as tmp:
        # LoRAs need the model's layer shapes only: built on a CPU copy that is dropped before the timing.
        pipe = load_base_pipeline(model, device=torch.device("cpu"), dtype=torch.float32)
        loras = save_loras(pipe, Path(tmp), 2 + 2 * runs, 16, text_encoder=True)
        del pipe
        times = warm(Path(model), loras, request, runs, args.device)
    render_s = statistics.median(times["base"])
    swap_s = statistics.median(times["hotswap"])
    share = swap_s / render_s
    print(
        json.dumps(
            {
                "figure": f"lora_swap_{args.model}" + ("_dry" if args.dry else ""),
                "model": model if args.dry else f"random full-size {args.model} shapes",
                "device": args.device,
                "size": size,
                "steps": steps,
                "runs": runs,
                "render_s": round(render_s, 4),
                "swap_s": round(swap_s, 4),
                "swap_inject_s": round(statistics.median(times["inject"]), 4),
                "lora_render_s": round(statistics.median(times["lora_render"]), 4),
                "renderer_load_s": round(times["load"], 3),
                "swap_share": round(share, 4),
                "goal": {"swap_share_max": GOAL_SWAP_SHARE},
                "goal_met": share <= GOAL_SWAP_SHARE,
            }
        )
    )


if __name__ == "__main__":
    main()
