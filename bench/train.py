"""Training benchmark: our trainer against a plain loop written the way diffusers'
train_dreambooth_lora.py works.

Same model, resolution, batch, steps, LoRA (rank, targets, init) and optimizer (AdamW, constant LR) on both
sides. The reference runs the VAE and the text encoder on every step and keeps them resident, as that script
does without --cache_latents/--pre_compute_text_embeddings; ours encodes once and drops them. Three
comparisons: each side's defaults (ours picks bf16 where the device computes it natively, the script fp32), and
both sides at fp32 and at bf16, so the share of caching and the share of precision can be read apart.

Each measurement runs in its own subprocess so peak memory is that process's alone: the peak resident set
size from getrusage (ru_maxrss), plus the same peak minus the RSS just after the imports (torch, diffusers,
transformers: identical on both sides and not the trainer's doing). Runs alternate ours, ref, ours, ref on
a CPU shared with other work; figures are medians.

    python bench/train.py --quick     # tiny random SD (64 px), under 2 minutes
    python bench/train.py             # a randomly initialised full-size SD-1.5 at 256 px (~15 minutes)
    python bench/train.py --device cuda   # full-size SD-1.5 at 512 px on a GPU, both bf16, plain and compiled
    python bench/train.py --device cuda --model sdxl   # full-size SDXL at 1024 px
    python bench/train.py --dry --model sdxl   # the tiny model of that family, 3 steps: the pieces run

SDXL's reference follows train_dreambooth_lora_sdxl.py: prompt embeddings computed once (it does so without
text-encoder training), the VAE in fp32 and run on every step. One JSON line per comparison ("figure": ...);
the last line printed is one JSON object with the figures, the goal and goal_met (on a CPU judged on the
defaults comparison, on a GPU at equal precision, bf16, the better of ours plain and compiled;
met_per_comparison gives the verdict of each).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import shapes
from _args import count, device

REPO = Path(__file__).resolve().parents[1]
GOAL = {"time_per_step_ratio_max": 0.6, "peak_memory_ratio_max": 0.8}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- models -------------------------------------------------------------------------------------------------


def load_pipe(model: str, device: str):
    import torch

    from gpu_agent.engine.models import load_base_pipeline

    # The script's from_pretrained: fp32 weights in CPU memory (mapped from the files), moved to the device and
    # cast to its precision afterwards.
    return load_base_pipeline(model, device="cpu", dtype=torch.float32)


def photos(n: int = 5):
    import numpy as np
    from PIL import Image

    face = REPO / "tests" / "data" / "faces" / "astronaut.png"
    if face.is_file():
        with Image.open(face) as source:
            portrait = source.convert("RGB")
    else:  # an install without the tests: speed and memory do not depend on content
        portrait = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    return [portrait.crop((100 + 10 * i, 10 * i, 380 + 10 * i, 280 + 10 * i)) for i in range(n)]


# --- the two trainers ---------------------------------------------------------------------------------------


def run_ours(
    model: str, resolution: int, steps: int, rank: int, device: str, precision: str, compiled: bool = False
) -> list[float]:
    from gpu_agent.engine.training import TrainConfig, train_lora

    # The trainer loads the base model itself, as in production: straight into the precision it trains in.
    config = TrainConfig(
        base_model=model,
        compile_unet="on" if compiled else "off",
        resolution=resolution,
        steps=steps,
        rank=rank,
        learning_rate=1e-4,
        prior_preservation=False,
        train_text_encoder=False,
        snr_gamma=None,
        use_8bit_adam=False,
        mixed_precision=precision,
    )
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train_lora(
            config,
            photos(),
            output_dir=out,
            device=device,
            progress=lambda *_: stamps.append(time.perf_counter()),
        )
    # Step 1's time includes encoding the photos once (ours' set-up); the reference pays that every step.
    return [b - a for a, b in zip([start, *stamps], stamps, strict=False)]


def run_reference(
    model: str, resolution: int, steps: int, rank: int, device: str, precision: str, compiled: bool = False
) -> list[float]:
    """The loop of diffusers' examples/dreambooth/train_dreambooth_lora.py, reduced to what is measured.

    precision "no" is the script's default; "bf16" is its --mixed_precision=bf16: it loads the fp32 weights,
    casts the frozen ones to bf16, keeps the LoRA weights fp32 and runs the step under autocast."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from PIL import Image

    pipe = load_pipe(model, device)
    mixed = precision == "bf16"
    weight_dtype = torch.bfloat16 if mixed else torch.float32
    pipe.to(device, weight_dtype)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    for module in (unet, vae, text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.requires_grad_(False)
    vae_dtype = weight_dtype
    if sdxl:
        # train_dreambooth_lora_sdxl.py keeps the VAE in fp32 (the SDXL VAE overflows in half precision) and,
        # without text-encoder training, computes the prompt embeddings once before the loop.
        vae.to(dtype=torch.float32)
        vae_dtype = torch.float32
        with torch.no_grad():
            hidden, _, pooled, _ = pipe.encode_prompt(
                "a photo of sks person",
                device=device,
                num_images_per_prompt=1,
                do_classifier_free_guidance=False,
            )
        time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                init_lora_weights="gaussian",
                target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            )
        )
    unet.train()
    if mixed:
        from diffusers.training_utils import cast_training_params

        cast_training_params(unet, dtype=torch.float32)
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    lr_scheduler = get_scheduler("constant", optimizer, num_warmup_steps=0, num_training_steps=steps)
    images = photos()
    # The script tokenises in its dataset and runs the text encoder on every batch.
    input_ids = tokenizer(
        "a photo of sks person",
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids.to(device)

    def example(i: int) -> torch.Tensor:
        # The dataset's transforms: resize, centre crop, to tensor, normalise, on every __getitem__.
        image = images[i % len(images)]
        scale = resolution / min(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR
        )
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        return pipe.image_processor.preprocess(image, height=resolution, width=resolution).to(
            device, vae_dtype
        )

    times = []
    for step in range(steps):
        began = time.perf_counter()
        pixel_values = example(step)
        with torch.autocast(torch.device(device).type, dtype=weight_dtype, enabled=mixed):
            latents = vae.encode(pixel_values).latent_dist.sample() * vae.config.scaling_factor
            latents = latents.to(weight_dtype)
            noise = torch.randn_like(latents)
            timesteps = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
            )
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            if sdxl:
                added = {"text_embeds": pooled, "time_ids": time_ids.to(pooled.dtype)}
                prediction = unet(noisy, timesteps, hidden, added_cond_kwargs=added).sample
            else:
                encoder_hidden_states = text_encoder(input_ids)[0]
                prediction = unet(noisy, timesteps, encoder_hidden_states).sample
            loss = F.mse_loss(prediction.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss)  # waits for the GPU, as ours does when it reports the loss
        times.append(time.perf_counter() - began)
    return times


def worker(args: argparse.Namespace) -> None:
    # The import baseline: the ML stack both sides load (and diffusers' lazily imported SD pipeline module).
    import accelerate  # noqa: F401
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    from diffusers import DDPMScheduler, StableDiffusionPipeline  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    baseline = rss_mb()
    run = run_ours if args.worker == "ours" else run_reference
    times = run(args.model, args.resolution, args.steps, args.rank, args.device, args.precision, args.compile)
    result = {"step_s": times, "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline}
    if args.device.startswith("cuda"):
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


# --- the comparison -----------------------------------------------------------------------------------------


# (name, ours' mixed_precision, the reference's): each side's defaults (ours "auto" picks bf16 on CUDA and on
# CPUs with native bf16; the script's default is fp32), then both sides at the same precision.
# both_bf16_compiled: the same with ours' torch.compile of the UNet (GPU runs; compiling costs minutes on a CPU).
COMPARISONS = {
    "defaults": ("auto", "no", False),
    "both_fp32": ("no", "no", False),
    "both_bf16": ("bf16", "bf16", False),
    "both_bf16_compiled": ("bf16", "bf16", True),
}


def measure(
    model: str,
    resolution: int,
    steps: int,
    rounds: int,
    rank: int,
    device: str,
    precisions: tuple[str, str],
    threads: int = 0,
    compiled: bool = False,
) -> dict:
    results: dict[str, list[dict]] = {"ours": [], "ref": []}
    for _ in range(rounds):
        for impl, precision in zip(
            ("ours", "ref"), precisions, strict=True
        ):  # alternate: other work hits both alike
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    impl,
                    "--base",
                    model,
                    "--resolution",
                    str(resolution),
                    "--steps",
                    str(steps),
                    "--rank",
                    str(rank),
                    "--device",
                    device,
                    "--precision",
                    precision,
                    "--threads",
                    str(threads),
                    *(["--compile"] if compiled and impl == "ours" else []),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                },
            )
            if done.returncode != 0:
                raise SystemExit(f"{impl} worker failed:\n{done.stderr[-3000:]}")
            results[impl].append(json.loads(done.stdout.strip().splitlines()[-1]))

    def summary(runs: list[dict]) -> dict:
        # Step 1 is warm-up on both sides (first-call allocations; for ours, also the one-off encoding); with
        # torch.compile the first two (the forward and backward graphs are compiled, then re-used).
        warmup = 2 if compiled and steps > 3 else 1
        steady = [t for r in runs for t in r["step_s"][warmup:]]
        return {
            "time_per_step_s": statistics.median(steady),
            "first_step_s": statistics.median(r["step_s"][0] for r in runs),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
            "peak_above_imports_mb": statistics.median(r["peak_rss_mb"] - r["baseline_rss_mb"] for r in runs),
            **(
                {"peak_gpu_mb": statistics.median(r["peak_gpu_mb"] for r in runs)}
                if "peak_gpu_mb" in runs[0]
                else {}
            ),
        }

    ours, ref = summary(results["ours"]), summary(results["ref"])
    gpu = {"peak_gpu_ratio": ours["peak_gpu_mb"] / ref["peak_gpu_mb"]} if "peak_gpu_mb" in ours else {}
    return {
        "device": device,
        "model": model,
        "resolution": resolution,
        "batch": 1,
        "steps": steps,
        "rounds": rounds,
        "rank": rank,
        "torch_threads": threads or "default",
        "precision": {"ours": precisions[0], "reference": precisions[1]},
        "ours_compiled": compiled,
        "ours": ours,
        "reference": ref,
        "time_per_step_ratio": ours["time_per_step_s"] / ref["time_per_step_s"],
        "peak_rss_ratio": ours["peak_rss_mb"] / ref["peak_rss_mb"],
        "peak_above_imports_ratio": ours["peak_above_imports_mb"] / ref["peak_above_imports_mb"],
        **gpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny model only (under 2 minutes)")
    parser.add_argument(
        "--model",
        choices=shapes.FULL,
        default="sd15",
        help="full-size random shapes to train (default sd15; the tiny model with --quick or --dry)",
    )
    parser.add_argument(
        "--dry",
        action="store_true",
        help="the tiny model of --model's family, 3 steps, 1 round: checks the pieces run (bench/gpu.sh --dry)",
    )
    parser.add_argument(
        "--comparisons",
        default="",
        help=f"comma-separated, of {', '.join(COMPARISONS)} (default: the first three; with --device cuda "
        "both_bf16 and both_bf16_compiled)",
    )
    parser.add_argument("--worker", choices=("ours", "ref"), help=argparse.SUPPRESS)
    parser.add_argument("--base", default="tiny-sd", help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=count(8), default=0, help="training crops, px")
    parser.add_argument("--steps", type=count(0), default=0, help="steps per run")
    parser.add_argument("--rank", type=count(1), default=16, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rounds", type=count(0), default=0, help="ours/ref pairs per comparison (default 2; 1 with --quick)"
    )
    parser.add_argument(
        "--threads",
        type=count(0),
        default=1,
        help="torch threads per run (default 1; 0 = torch's own): on a CPU shared with other work, OpenMP's "
        "spinning threads turned two-thread timings into several-fold noise",
    )
    parser.add_argument("--precision", default="no", choices=("auto", "no", "bf16"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--device", type=device, default="cpu", help="cpu, or cuda: full-size shapes at 512 px (SDXL 1024)"
    )
    args = parser.parse_args()
    if args.worker:
        args.model = args.base
        worker(args)
        return

    cuda = args.device.startswith("cuda")
    names = [n.strip() for n in args.comparisons.split(",") if n.strip()] or (
        ["both_bf16", "both_bf16_compiled"]
        if cuda and not args.dry
        else ["defaults", "both_fp32", "both_bf16"]
    )
    unknown = [n for n in names if n not in COMPARISONS]
    if unknown:
        parser.error(f"unknown comparison(s) {', '.join(unknown)}; choose from {', '.join(COMPARISONS)}")
    if args.quick or args.dry:
        model, resolution, steps = shapes.TINY[args.model], 64, 3 if args.dry else 10
    elif cuda:
        model, resolution, steps = shapes.model_path(args.model), 1024 if args.model == "sdxl" else 512, 12
    else:
        model, resolution, steps = shapes.model_path(args.model), 256, 4
    resolution, steps = args.resolution or resolution, args.steps or steps
    rounds = args.rounds or (1 if args.quick or args.dry or cuda else 2)
    figures = {}
    for name in names:
        ours, ref, compiled = COMPARISONS[name]
        figures[name] = measure(
            model, resolution, steps, rounds, 16, args.device, (ours, ref), args.threads, compiled
        )
        figure = figures[name]
        print(
            json.dumps(
                {
                    "figure": f"train_{args.model}_{name}" + ("_dry" if args.dry else ""),
                    "time_per_step_ratio": round(figure["time_per_step_ratio"], 3),
                    "ours_s": round(figure["ours"]["time_per_step_s"], 4),
                    "reference_s": round(figure["reference"]["time_per_step_s"], 4),
                    name: figure,
                }
            ),
            flush=True,
        )
    # CPU: judged on each side's defaults, what a user of each gets (the matched-precision rows say how much of
    # that is caching and how much precision; docs/benchmarks/train.md reports all three). GPU: at equal
    # precision (bf16), the better of ours plain and compiled.
    judged_names = [n for n in ("both_bf16", "both_bf16_compiled") if n in figures] if cuda else ["defaults"]
    judged_names = [n for n in judged_names if n in figures] or names[:1]
    judged_on = min(judged_names, key=lambda n: figures[n]["time_per_step_ratio"])
    judged = figures[judged_on]
    memory_key = "peak_gpu_ratio" if cuda else "peak_rss_ratio"
    verdicts = {
        name: f["time_per_step_ratio"] <= GOAL["time_per_step_ratio_max"]
        and f[memory_key] <= GOAL["peak_memory_ratio_max"]
        for name, f in figures.items()
    }
    print(
        json.dumps(
            {
                **figures,
                "figure": f"train_{args.model}" + ("_dry" if args.dry else ""),
                "model": model if args.quick or args.dry else args.model,
                "judged_on": judged_on,
                "goal": GOAL,
                "met_per_comparison": verdicts,
                "time_per_step_ratio": judged["time_per_step_ratio"],
                "peak_memory_ratio": judged[memory_key],
                "goal_met": verdicts[judged_on],
                "memory_method": "CPU: getrusage ru_maxrss of a separate process per run (also minus the RSS "
                "after imports); CUDA: torch.cuda.max_memory_allocated",
                "machine": _machine(args.device),
            }
        )
    )


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()}-core x86_64 CPU, no GPU (shared with other work)"


if __name__ == "__main__":
    main()
