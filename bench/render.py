"""Rendering: a new member's first image on a warm Renderer against loading a fresh pipeline per job.

    python bench/render.py [--quick] [--runs N] [--size PX] [--steps N] [--device cpu|cuda]

Side by side in one run, on one base model saved to disk once (so a "fresh load" reads weights from disk,
as a naive agent would for every job):
  base   — warm Renderer, no LoRA (the floor);
  swap   — warm Renderer, a LoRA it has never seen (load_lora_weights + set_adapters + render);
  fresh  — load the base pipeline from disk, load the LoRA, render (one job on a cold pipeline).
base and swap alternate, so a busy machine slows both alike. Figures are medians.
Goal: the swap's time is <= 10 % of a base render, and fresh job / first image >= 5.

--quick uses the tiny random SD-1.x model; the full run adds a randomly initialised full-size SD-1.5-shaped
model (UNet, VAE and CLIP-L-sized text encoder built from config, nothing downloaded) at --size px.
"""

from __future__ import annotations

import _paths  # noqa: F401,I001 - first: takes bench/ off sys.path (see bench/_paths.py)

import argparse
import copy
import gc
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import LoraRef, RenderRequest

GOAL = "LoRA swap adds <= 10% to a base render; warm swap >= 5x faster than a fresh pipeline per job"


def save_loras(pipe: Any, folder: Path, count: int, rank: int) -> list[LoraRef]:
    """``count`` distinct random LoRAs of ``rank`` on the UNet's attention projections (what the trainer targets)."""
    from diffusers.utils import convert_state_dict_to_diffusers

    refs = []
    for i in range(count):
        torch.manual_seed(100 + i)
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                            init_lora_weights=False)
        unet = inject_adapter_in_model(config, copy.deepcopy(pipe.unet))
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        del unet
        out = folder / f"lora{i}"
        out.mkdir()
        type(pipe).save_lora_weights(str(out), unet_lora_layers=layers, weight_name="lora.safetensors")
        refs.append(LoraRef(f"bench-{i}", out / "lora.safetensors"))
    return refs


def full_size_sd15(tokenizer: Any) -> Any:
    """SD-1.5's shapes (UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder 123M) with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2, sample_size=512,
    )
    text = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        vocab_size=len(tokenizer), max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id or 0,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def warm(model_dir: Path, loras: list[LoraRef], request: RenderRequest, runs: int,
         device: str) -> dict[str, Any]:
    """Timings on one warm Renderer: base renders, and for each never-seen LoRA its load and first render."""
    start = time.perf_counter()
    renderer = Renderer(str(model_dir), device=device, max_resident=2)
    load_s = time.perf_counter() - start
    renderer.render(request)  # warm-up: first-call allocations, lazy weight reads, kernel selection
    base, swap, lora_render = [], [], []
    for i in range(runs):
        base.append(timed(lambda: renderer.render(request)))
        swap.append(timed(lambda i=i: renderer.load(loras[i])))
        lora_render.append(timed(lambda i=i: renderer.render(request, loras[i])))
    return {"load": load_s, "base": base, "swap": swap, "lora_render": lora_render}


def cold(model_dir: Path, lora: LoraRef, request: RenderRequest, device: str) -> dict[str, float]:
    """One job the naive way: load the base pipeline, load the LoRA, render."""
    sync()
    start = time.perf_counter()
    renderer = Renderer(str(model_dir), device=device)
    loaded = time.perf_counter()
    renderer.load(lora)
    sync()
    swapped = time.perf_counter()
    renderer.render(request, lora)
    sync()
    done = time.perf_counter()
    return {"load": loaded - start, "swap": swapped - loaded, "render": done - swapped}


def measure(label: str, model_dir: Path, loras: list[LoraRef], request: RenderRequest, runs: int,
            fresh_runs: int, device: str) -> dict[str, Any]:
    w = warm(model_dir, loras, request, runs, device)
    gc.collect()  # the warm renderer is gone before the cold ones load
    fresh = []
    for i in range(fresh_runs):
        fresh.append(cold(model_dir, loras[runs + i], request, device))
        gc.collect()
    med = statistics.median
    base, swap, lora_render = med(w["base"]), med(w["swap"]), med(w["lora_render"])
    first_image = med([s + r for s, r in zip(w["swap"], w["lora_render"], strict=True)])
    fresh_job = med([sum(f.values()) for f in fresh])
    return {
        "model": label,
        "size": f"{request.width}x{request.height}",
        "steps": request.steps,
        "base_render_s": round(base, 4),
        "lora_swap_s": round(swap, 4),
        "lora_render_s": round(lora_render, 4),
        "new_lora_first_image_s": round(first_image, 4),
        "fresh_job_s": round(fresh_job, 4),
        "fresh_base_load_s": round(med([f["load"] for f in fresh]), 4),
        "swap_overhead_pct": round(100 * swap / base, 1),
        "first_image_overhead_pct": round(100 * (first_image - base) / base, 1),
        "fresh_over_swap": round(fresh_job / first_image, 2),
        "runs": runs,
        "fresh_runs": fresh_runs,
    }


def run_model(label: str, pipe: Any, request: RenderRequest, runs: int, fresh_runs: int, rank: int,
              device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="photogen-bench-") as tmp:
        root = Path(tmp)
        model_dir = root / "base"
        pipe.save_pretrained(str(model_dir), safe_serialization=True)
        loras = save_loras(pipe, root, runs + fresh_runs, rank)
        del pipe
        gc.collect()
        return measure(label, model_dir, loras, request, runs, fresh_runs, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model only (about a minute on 2 CPU cores)")
    ap.add_argument("--runs", type=int, default=None, help="new-member renders timed per model")
    ap.add_argument("--size", type=int, default=256, help="full-size model's render side in px")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: steadiest on a shared machine, where spinning OpenMP threads "
                         "make multi-threaded timings swing several-fold)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    tiny = load_base_pipeline("tiny-sd", device=torch.device("cpu"), dtype=None, cache_dir=None)
    results.append(run_model(
        "tiny-sd", tiny, RenderRequest("photo of {subject}", subject="sks man", width=64, height=64,
                                       steps=args.steps or 12, seed=1),
        runs=args.runs or 5, fresh_runs=3, rank=4, device=args.device,
    ))
    if not args.quick:
        full = full_size_sd15(tiny.tokenizer)
        del tiny
        results.append(run_model(
            "random full-size SD-1.5 shapes", full,
            RenderRequest("photo of {subject}", subject="sks man", width=args.size, height=args.size,
                          steps=args.steps or 4, seed=1),
            runs=args.runs or 3, fresh_runs=2, rank=16, device=args.device,
        ))
    for r in results:
        print(f"{r['model']:>32}  {r['size']:>8} {r['steps']:>2} steps  base {r['base_render_s']:.3f}s  "
              f"swap {r['lora_swap_s']:.3f}s (+{r['swap_overhead_pct']}%)  "
              f"first image {r['new_lora_first_image_s']:.3f}s (+{r['first_image_overhead_pct']}%)  "
              f"fresh job {r['fresh_job_s']:.3f}s ({r['fresh_over_swap']}x)")
    judged = results[-1]
    summary = {
        "bench": "render",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""),
        "results": results,
        "judged_on": judged["model"],
        "goal": GOAL,
        # "the swap adds": the swap's own time against a base render. first_image_overhead_pct (swap + the
        # LoRA's extra compute, as a difference of two noisy renders) is reported beside it.
        "goal_met": judged["swap_overhead_pct"] <= 10 and judged["fresh_over_swap"] >= 5,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
