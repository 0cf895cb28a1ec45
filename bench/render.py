"""Rendering: a new member's first image on a warm Renderer against loading a fresh pipeline per job.

    python bench/render.py [--quick] [--runs N] [--size PX] [--steps N] [--device cpu|cuda] [--unet-only]

Side by side in one run, on one base model saved to disk once (so a "fresh load" reads weights from disk,
as a naive agent would for every job):
  base   — warm Renderer, no LoRA (the floor);
  swap   — warm Renderer whose resident slots are all taken (a busy agent), a LoRA it has never seen, by each
           path: "hotswap" (the new LoRA's tensors copied into the least recently used slot's layers) and
           "inject" (a new peft adapter, then the LRU one deleted: the Renderer's path before hotswap);
  fresh  — load the base pipeline from disk, load the LoRA, render (one job on a new pipeline), once with the
           base model's files in the page cache and once after evicting them (posix_fadvise DONTNEED).
base and the two swap paths alternate (the paths' order flips every run), so a busy machine slows all alike.
Figures are medians. LoRAs are shaped as the trainer writes them: rank r on the UNet's attention projections
and the text encoder's, alpha = r, the peft config in the file (--unet-only: UNet only, as earlier runs).
Goal: the swap's time is <= 10 % of a base render, and fresh job / first image >= 5, judged on the
warm-cache fresh job (the naive agent's best case); the cold-cache ratio is printed beside it.

--quick uses the tiny random SD-1.x model; the full run adds a randomly initialised full-size SD-1.5-shaped
model (UNet, VAE and CLIP-L-sized text encoder built from config, nothing downloaded) at --size px.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import torch
from _args import count, device
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import LoraRef, RenderRequest

GOAL = "LoRA swap adds <= 10% to a base render; warm swap >= 5x faster than a fresh pipeline per job"
# The trainer's default targets (gpu_agent/engine/training/config.py).
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def save_loras(pipe: Any, folder: Path, count: int, rank: int, *, text_encoder: bool) -> list[LoraRef]:
    """``count`` distinct random LoRAs in the trainer's format. Injects LoRA layers into ``pipe`` itself, so
    call it after the base model is saved."""
    from diffusers.utils import convert_state_dict_to_diffusers

    configs = {"unet": LoraConfig(r=rank, lora_alpha=rank, target_modules=UNET_TARGETS)}
    if text_encoder:
        configs["text_encoder"] = LoraConfig(r=rank, lora_alpha=rank, target_modules=TEXT_TARGETS)
    models = {name: inject_adapter_in_model(config, getattr(pipe, name)) for name, config in configs.items()}
    refs = []
    for i in range(count):
        generator = torch.Generator().manual_seed(100 + i)
        layers: dict[str, Any] = {}
        for name, model in models.items():
            with torch.no_grad():
                for param_name, param in model.named_parameters():
                    if "lora_" in param_name:
                        param.normal_(0.0, 0.02, generator=generator)
            layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(get_peft_model_state_dict(model))
            layers[f"{name}_lora_adapter_metadata"] = configs[name].to_dict()
        out = folder / f"lora{i}"
        out.mkdir()
        type(pipe).save_lora_weights(str(out), weight_name="lora.safetensors", **layers)
        refs.append(LoraRef(f"bench-{i}", out / "lora.safetensors"))
    return refs


def full_size_sd15(tokenizer: Any) -> Any:
    """SD-1.5's shapes (UNet 860M, VAE 84M, CLIP ViT-L/14 text encoder 123M) with random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id or 0,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def warm(
    model_dir: Path, loras: list[LoraRef], request: RenderRequest, runs: int, device: str
) -> dict[str, Any]:
    """Timings on one warm Renderer with both slots taken: base renders, and never-seen LoRAs swapped in by
    each path (alternating which goes first), the last one then rendered."""
    start = time.perf_counter()
    renderer = Renderer(str(model_dir), device=device, max_resident=2)
    load_s = time.perf_counter() - start
    new = iter(loras)
    for _ in range(renderer.max_resident):  # a busy agent's steady state: every slot holds someone
        renderer.load(next(new))
    # warm-up: first-call allocations, lazy weight reads, kernel selection, with and without LoRA layers
    renderer.render(request)
    renderer.render(request, loras[0])
    times: dict[str, list[float]] = {"base": [], "hotswap": [], "inject": [], "lora_render": []}
    for i in range(runs):
        times["base"].append(timed(lambda: renderer.render(request)))
        for path in ("hotswap", "inject") if i % 2 == 0 else ("inject", "hotswap"):
            lora = next(new)
            renderer.adapters.hotswap = path == "hotswap"
            took: list[str] = []
            times[path].append(timed(lambda lora=lora, took=took: took.append(renderer.load(lora))))
            assert took == [path], (path, took)
        renderer.adapters.hotswap = True
        times["lora_render"].append(timed(lambda lora=lora: renderer.render(request, lora)))
    return {"load": load_s, **times}


def page_cache_evict(folder: Path) -> int | None:
    """Drop ``folder``'s files from the page cache (clean pages need no root); returns the bytes fincore still
    finds cached afterwards (None without fincore), so the report shows the eviction worked."""
    files = [f for f in folder.rglob("*") if f.is_file()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)  # pages still dirty from save_pretrained would stay cached
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    if shutil.which("fincore") is None:
        return None
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(line) for line in out.split())


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


def measure(
    label: str,
    model_dir: Path,
    loras: list[LoraRef],
    request: RenderRequest,
    runs: int,
    fresh_runs: int,
    device: str,
) -> dict[str, Any]:
    warm_loras = 2 + 2 * runs
    w = warm(model_dir, loras[:warm_loras], request, runs, device)
    gc.collect()  # the warm renderer is gone before the fresh ones load
    fresh: dict[str, list[dict[str, float]]] = {"warm": [], "cold": []}
    left_cached: list[int] = []
    spare = iter(loras[warm_loras:])
    for _ in range(fresh_runs):
        for cache in ("warm", "cold"):
            if cache == "cold":
                cached = page_cache_evict(model_dir)
                if cached is not None:
                    left_cached.append(cached)
            fresh[cache].append(cold(model_dir, next(spare), request, device))
            gc.collect()
    med = statistics.median
    base, lora_render = med(w["base"]), med(w["lora_render"])
    swap, inject = med(w["hotswap"]), med(w["inject"])
    first_image = swap + lora_render
    fresh_job = med([sum(f.values()) for f in fresh["warm"]])
    fresh_cold = med([sum(f.values()) for f in fresh["cold"]])
    return {
        "model": label,
        "size": f"{request.width}x{request.height}",
        "steps": request.steps,
        "base_render_s": round(base, 4),
        "lora_swap_s": round(swap, 4),
        "lora_swap_inject_s": round(inject, 4),
        "swap_speedup": round(inject / swap, 2),
        "lora_render_s": round(lora_render, 4),
        "new_lora_first_image_s": round(first_image, 4),
        "fresh_job_s": round(fresh_job, 4),
        "fresh_job_cold_cache_s": round(fresh_cold, 4),
        "fresh_base_load_s": round(med([f["load"] for f in fresh["warm"]]), 4),
        "fresh_base_load_cold_cache_s": round(med([f["load"] for f in fresh["cold"]]), 4),
        "cached_bytes_after_evict": max(left_cached) if left_cached else None,
        "model_bytes": sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()),
        "swap_overhead_pct": round(100 * swap / base, 1),
        "swap_overhead_inject_pct": round(100 * inject / base, 1),
        "first_image_overhead_pct": round(100 * (first_image - base) / base, 1),
        "fresh_over_swap": round(fresh_job / first_image, 2),
        "fresh_cold_over_swap": round(fresh_cold / first_image, 2),
        "runs": runs,
        "fresh_runs": fresh_runs,
    }


def run_model(
    label: str,
    pipe: Any,
    request: RenderRequest,
    runs: int,
    fresh_runs: int,
    rank: int,
    device: str,
    *,
    text_encoder: bool,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="photogen-bench-") as tmp:
        root = Path(tmp)
        model_dir = root / "base"
        pipe.save_pretrained(str(model_dir), safe_serialization=True)
        loras = save_loras(pipe, root, 2 + 2 * runs + 2 * fresh_runs, rank, text_encoder=text_encoder)
        del pipe
        gc.collect()
        return measure(label, model_dir, loras, request, runs, fresh_runs, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model only (about a minute on 2 CPU cores)")
    ap.add_argument("--runs", type=count(1), default=None, help="new-member swaps timed per path and model")
    ap.add_argument("--size", type=count(64), default=256, help="full-size model's render side in px")
    ap.add_argument("--steps", type=count(1), default=None, help="denoising steps")
    ap.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--unet-only", action="store_true", help="LoRAs on the UNet only (as runs before 2026-11-26)"
    )
    ap.add_argument(
        "--threads",
        type=count(1),
        default=1,
        help="torch CPU threads (1: steadiest on a shared machine, where spinning OpenMP threads "
        "make multi-threaded timings swing several-fold)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text_encoder = not args.unet_only

    results = []
    tiny = load_base_pipeline("tiny-sd", device=torch.device("cpu"), dtype=None, cache_dir=None)
    tokenizer = tiny.tokenizer
    results.append(
        run_model(
            "tiny-sd",
            tiny,
            RenderRequest(
                "photo of {subject}", subject="sks man", width=64, height=64, steps=args.steps or 12, seed=1
            ),
            runs=args.runs or 5,
            fresh_runs=3,
            rank=4,
            device=args.device,
            text_encoder=text_encoder,
        )
    )
    del tiny
    if not args.quick:
        results.append(
            run_model(
                "random full-size SD-1.5 shapes",
                full_size_sd15(tokenizer),
                RenderRequest(
                    "photo of {subject}",
                    subject="sks man",
                    width=args.size,
                    height=args.size,
                    steps=args.steps or 4,
                    seed=1,
                ),
                runs=args.runs or 3,
                fresh_runs=2,
                rank=16,
                device=args.device,
                text_encoder=text_encoder,
            )
        )
    for r in results:
        print(
            f"{r['model']:>32}  {r['size']:>8} {r['steps']:>2} steps  base {r['base_render_s']:.3f}s  "
            f"swap {r['lora_swap_s']:.3f}s (+{r['swap_overhead_pct']}%; inject {r['lora_swap_inject_s']:.3f}s, "
            f"{r['swap_speedup']}x slower)  first image {r['new_lora_first_image_s']:.3f}s  "
            f"fresh job {r['fresh_job_s']:.3f}s ({r['fresh_over_swap']}x), "
            f"page cache evicted {r['fresh_job_cold_cache_s']:.3f}s ({r['fresh_cold_over_swap']}x)"
        )
    judged = results[-1]
    summary = {
        "bench": "render",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""),
        "loras": "UNet only" if args.unet_only else "UNet + text encoder",
        "results": results,
        "judged_on": judged["model"],
        "goal": GOAL,
        # "the swap adds": the hotswap path's own time against a base render (first_image_overhead_pct, a
        # difference of two noisy renders, is beside it). The 5x is judged on the fresh job with the base
        # model in the page cache, the naive agent's best case; the cold-cache ratio is reported, not judged.
        "goal_judged_on": "swap_overhead_pct and fresh_over_swap (warm page cache)",
        "goal_met": judged["swap_overhead_pct"] <= 10 and judged["fresh_over_swap"] >= 5,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
