"""Group pictures: time and peak memory of a 2-, 3- and 4-person picture against a single render.

    python bench/group.py [--quick] [--runs N] [--size WxH] [--steps N] [--device cpu|cuda] [--threads N]

One warm Renderer (the base model loaded once) and one GroupComposer on it; the members' LoRAs go through the
Renderer's adapter slots (swapped in, then resident), never a reload of the base. Per run, in alternating
order so a busy machine slows all alike: a single render of one member (txt2img with their LoRA) and a group
picture of n members (pose ControlNet base render, CLIPSeg regions, one masked re-denoise per member on a crop
around their region, harmonisation), both at the same size and steps. Figures are medians. Peak memory:
torch.cuda.max_memory_allocated on CUDA; on the CPU the kernel's peak resident set (VmHWM, reset before the
call) (the peak above the resident set before the call, and the absolute peak). Time: wall seconds on CUDA,
process CPU seconds on the CPU (a shared machine's load does not inflate them).

Goal: a group picture of n people takes <= (1 + 0.6 n) x a single render, with the base model loaded once and
LoRAs swapped, not reloaded (lora_loads after the first picture of a group: 0; base_loads: 1).

--quick: the tiny random SD-1.x model with the tiny ControlNet and CLIPSeg (under two minutes on 2 CPU cores).
Without it: randomly initialised full-size SD-1.5 shapes (UNet, VAE, CLIP-L text encoder from bench/render.py),
a full-size ControlNet built from that UNet and a CLIPSeg of rd64's shapes, nothing downloaded.

The face pass: random models draw noise, in which no face is found, so the figures above have none. A second
measurement of the 2-person picture (the tightest goal, 2.2x) pastes real face photos (tests/data/faces) where
the layout puts the heads, through the composer's ``people`` hook (engine/group/face_stand_in.py), into the base
render and each member's layer, so the face pass really detects and redraws each member's face. It is timed
like for like (``with_face_pass``): against a single render of one member with the same stand-in face pasted
where a full-body picture has its head, before the single render's own face pass (face_detail on, as the
landmark presets ask), so both sides pay their face passes; ``ratio_to_plain_single`` is the same group
picture against the plain single render (no face, no face pass). At 128x64 (--quick) the faces are 32 px, which dlib
finds only with 2x upsampling, so that run's detector is set to upsample 2 and faces up to 25 % of the picture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import torch
from _args import count, device
from PIL import Image
from render import save_loras

from gpu_agent.engine.face_detail import FaceDetailConfig
from gpu_agent.engine.group.compose import GroupComposer, GroupConfig, GroupMemberLora, GroupRequest
from gpu_agent.engine.group.face_stand_in import face_crops, paste_faces
from gpu_agent.engine.models import load_base_pipeline
from gpu_agent.engine.render import Renderer
from gpu_agent.engine.render_types import LoraRef, RenderRequest

PROMPT = "photo of {subject} at the eiffel tower"
FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces"
SUBJECTS = ["sks man", "ohwx woman", "zwx man", "sks woman"]


def goal_ratio(n: int) -> float:
    return 1 + 0.6 * n


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Sets the kernel's peak resident set (VmHWM) back to the current one (Linux >= 4.0): no sampling
    thread, whose wake-ups every few milliseconds would take the GIL from the work being timed."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measured(call: Callable[[], Any], device: str) -> tuple[float, int, int]:
    """(seconds, peak bytes above the start, absolute peak bytes) of ``call()``. Seconds: wall time on CUDA;
    on the CPU the process's CPU time, which a machine shared with other work does not inflate (torch runs
    --threads threads; with 1 it is the work itself). Peak on the CPU: the kernel's peak resident set (VmHWM),
    reset before the call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_bytes = torch.cuda.memory_allocated()
        started = time.perf_counter()
        call()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated()
        return seconds, peak - start_bytes, peak
    _reset_peak_rss()
    start_bytes = _status_kb("VmRSS")
    started = time.process_time()
    call()
    seconds = time.process_time() - started
    peak = _status_kb("VmHWM")
    return seconds, peak - start_bytes, peak


def process_wall_s() -> float:
    """Wall seconds since this process started (imports included), from /proc."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def count_lora_loads(renderer: Renderer) -> Counter[str]:
    """Counts how the renderer's adapter slots bring LoRAs in (inject / hotswap / resident)."""
    paths: Counter[str] = Counter()
    activate = renderer.adapters.activate

    def counted(lora: LoraRef | None) -> Any:
        path = activate(lora)
        if path is not None:
            paths[path] += 1
        return path

    renderer.adapters.activate = counted  # type: ignore[method-assign]
    return paths


def full_size_parts(device: str, folder: Path) -> tuple[Renderer, Any, Any, list[LoraRef]]:
    """SD-1.5-shaped random models (bench/render.py's), saved once; a ControlNet from its UNet; a CLIPSeg of
    rd64's shapes (CLIP ViT-B/16 towers, reduce_dim 64) with the tiny tokenizer."""
    from diffusers import ControlNetModel
    from render import full_size_sd15  # bench/render.py
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        ViTImageProcessorPil,
    )

    from gpu_agent.engine.group.components import Segmenter
    from gpu_agent.engine.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    pipe = full_size_sd15(tokenizer)
    model_dir = folder / "sd15-random"
    pipe.save_pretrained(str(model_dir))
    loras = save_loras(pipe, folder, 4, 16, text_encoder=True)
    renderer = Renderer(str(model_dir), device=device, max_resident=4)
    unet = renderer.pipelines[0].unet
    controlnet = ControlNetModel.from_unet(unet).to(device=unet.device, dtype=unet.dtype).eval()
    config = CLIPSegConfig(
        text_config={"vocab_size": len(tokenizer), "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"patch_size": 16},
        reduce_dim=64,
    )
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessorPil(size={"height": 352, "width": 352}), tokenizer=tokenizer
    )
    segmenter = Segmenter(CLIPSegForImageSegmentation(config), processor, torch.device(device))
    return renderer, controlnet, segmenter, loras


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="tiny models only (under two minutes on 2 CPU cores)"
    )
    ap.add_argument("--runs", type=count(1), default=None, help="timed runs per group size")
    ap.add_argument("--size", default=None, help="WxH of the pictures (default 128x64 quick, 384x256 full)")
    ap.add_argument("--steps", type=count(1), default=None, help="denoising steps (default 4 quick, 6 full)")
    ap.add_argument("--device", type=device, default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--threads", type=count(1), default=1, help="torch CPU threads (1: steadiest when shared)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in (args.size or ("128x64" if args.quick else "384x256")).split("x"))
    steps = args.steps or (4 if args.quick else 6)
    runs = args.runs or (1 if args.quick else 2)
    config = GroupConfig(controlnet_model="tiny-controlnet", segmenter_model="tiny-clipseg")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-group-") as tmp:
        folder = Path(tmp)
        if args.quick:
            model = "tiny-sd"
            renderer = Renderer(model, device=args.device, max_resident=4)
            composer = GroupComposer(renderer, config)
            # bench/render.py's LoRAs (the trainer's format and targets), injected into a throwaway copy
            loras = save_loras(
                load_base_pipeline(model, device=torch.device("cpu")), folder, 4, 4, text_encoder=True
            )
        else:
            model = "random full-size SD-1.5 shapes"
            renderer, controlnet, segmenter, loras = full_size_parts(args.device, folder)
            composer = GroupComposer(renderer, config, controlnet=controlnet, segmenter=segmenter)
        setup_s = time.perf_counter() - started
        print(f"set up in {setup_s:.1f}s", file=sys.stderr, flush=True)
        base_unet = renderer.pipelines[0].unet
        loads = count_lora_loads(renderer)

        def single() -> None:
            renderer.render(
                RenderRequest(PROMPT, subject=SUBJECTS[0], width=width, height=height, steps=steps, seed=1),
                loras[0],
            )

        def group_request(n: int, face_detail: bool = True) -> GroupRequest:
            members = tuple(GroupMemberLora(loras[i], SUBJECTS[i]) for i in range(n))
            return GroupRequest(
                PROMPT,
                members,
                "row",
                width=width,
                height=height,
                steps=steps,
                seed=1,
                face_detail=face_detail,
            )

        def group_of(n: int) -> Callable[[], None]:
            request = group_request(n)
            return lambda: composer.render(request)

        # The 2-person picture with real faces where the heads are, and the face pass on.
        crops = face_crops([Image.open(FACES / name) for name in ("astronaut.png", "messi5.jpg")])
        face_side = 32 if args.quick else height // 4
        faced = GroupComposer(
            renderer,
            config,
            controlnet=composer.controlnet,
            segmenter=composer.segmenter,
            people=paste_faces(crops, face_side),
        )
        if args.quick:
            renderer.face_detail = FaceDetailConfig(max_share=0.25, upsample=2)
        found: list[int] = []

        def faced_group(warm_up: bool = False) -> None:
            request = group_request(2)
            if warm_up:
                request = replace(request, steps=1)
            (picture,) = faced.render(request)
            if not warm_up:
                found.append(sum(picture.faces))

        # The like-for-like single: one member's render of the same prompt with a real face where a full-body
        # picture has its head (a quarter down, centred) and its own face pass (face_detail on, as the landmark
        # presets ask): the same stand-in, pasted into the single render's pictures before its face pass.
        single_face = paste_faces(crops[:1], face_side)
        single_found: list[int] = []

        def faced_single(warm_up: bool = False) -> None:
            denoise = renderer._denoise

            def with_face(*args: Any, **kwargs: Any) -> tuple[list[Image.Image], list[bool]]:
                images, blanked = denoise(*args, **kwargs)
                return [single_face(i, [(i.width // 2, i.height // 4)]) for i in images], blanked

            renderer._denoise = with_face  # type: ignore[method-assign]
            try:
                (picture,) = renderer.render(
                    RenderRequest(
                        PROMPT,
                        subject=SUBJECTS[0],
                        width=width,
                        height=height,
                        steps=1 if warm_up else steps,
                        seed=1,
                        face_detail=True,
                    ),
                    loras[0],
                )
            finally:
                del renderer._denoise  # the class's own again
            if not warm_up:
                single_found.append(picture.params.face_detail or 0)

        for lora in loras:
            renderer.load(lora)  # every member's LoRA comes in once (as while an order's inputs download)
        before = sum(v for k, v in loads.items() if k != "resident")
        # Warm-up: first-call costs (kernels, allocator, lazy imports) are not a picture's; the faced 2-person
        # picture runs every stage and shape of the plain one and of a single render's (at one step: the
        # shapes are the same at any step count).
        faced_group(warm_up=True)
        faced_single(warm_up=True)
        # One sequence, every figure against the same single renders (their median): the single at the start,
        # the middle and the end, the tightest goal (2 people with faces) twice; the plain sizes, met with room,
        # once per run. On the CPU the time is the process's CPU seconds, which the machine's load does not
        # inflate much, so the order matters little; it is reversed on every other run all the same.
        sequence: list[tuple[str, Callable[[], None]]] = [
            ("single", single),
            ("single_faced", faced_single),
            ("faced", faced_group),
            ("2", group_of(2)),
            ("single", single),
            ("3", group_of(3)),
            ("4", group_of(4)),
            ("faced", faced_group),
            ("single_faced", faced_single),
            ("single", single),
        ]
        timed: dict[str, list[tuple[float, int, int]]] = {}
        for run in range(runs):
            for name, call in sequence if run % 2 == 0 else sequence[::-1]:
                timed.setdefault(name, []).append(measured(call, args.device))
                print(f"{name}: {timed[name][-1][0]:.3f}s", file=sys.stderr, flush=True)
        lora_loads_after_first = sum(v for k, v in loads.items() if k != "resident") - before
        singles = timed["single"]
        single_s = statistics.median(s for s, _, _ in singles)
        results = []
        for n in (2, 3, 4):
            groups = timed[str(n)]
            group_s = statistics.median(s for s, _, _ in groups)
            results.append(
                {
                    "people": n,
                    "single_s": round(single_s, 3),
                    "group_s": round(group_s, 3),
                    "ratio": round(group_s / single_s, 2),
                    "goal_ratio": round(goal_ratio(n), 2),
                    "single_peak_mb": round(max(p for _, p, _ in singles) / 2**20, 1),
                    "group_peak_mb": round(max(p for _, p, _ in groups) / 2**20, 1),
                    "single_peak_abs_mb": round(max(a for _, _, a in singles) / 2**20, 1),
                    "group_peak_abs_mb": round(max(a for _, _, a in groups) / 2**20, 1),
                    "lora_loads_after_first": lora_loads_after_first,
                }
            )
        group_s = statistics.median(s for s, _, _ in timed["faced"])
        single_faced_s = statistics.median(s for s, _, _ in timed["single_faced"])
        with_face_pass = {
            "people": 2,
            "single_s": round(single_faced_s, 3),
            "group_s": round(group_s, 3),
            "ratio": round(group_s / single_faced_s, 2),
            "goal_ratio": round(goal_ratio(2), 2),
            "faces_redrawn": min(found),
            "single_faces_redrawn": min(single_found),
            "plain_single_s": round(single_s, 3),
            "ratio_to_plain_single": round(group_s / single_s, 2),
        }
        print(f"2 people with the face pass: {with_face_pass}", file=sys.stderr, flush=True)
        assert renderer.pipelines[0].unet is base_unet  # the base model was never reloaded
    for r in results:
        print(
            f"{r['people']} people: group {r['group_s']:.3f}s vs single {r['single_s']:.3f}s = {r['ratio']}x "
            f"(goal <= {r['goal_ratio']}x); peak +{r['group_peak_mb']} MB vs +{r['single_peak_mb']} MB; "
            f"LoRA loads after the first picture: {r['lora_loads_after_first']}"
        )
    summary = {
        "bench": "group",
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
        f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""),
        "model": model,
        "size": f"{width}x{height}",
        "steps": steps,
        "runs": runs,
        "timed_as": "wall seconds" if args.device.startswith("cuda") else "process CPU seconds",
        "member_strength": config.member_strength,
        "harmonise_strength": config.harmonise_strength,
        "face_strength": config.face_strength,
        "face_side": config.face_side,
        "wall_s": round(process_wall_s(), 1),
        "cpu_s": round(time.process_time(), 1),
        "load_avg": round(os.getloadavg()[0], 1),
        "base_loads": 1,
        "lora_loads": dict(loads),
        "setup_s": round(setup_s, 1),
        "results": results,
        "with_face_pass": with_face_pass,
        "goal": "group picture of n people <= (1 + 0.6 n) x a single render at the same size and steps (with "
        "faces: against a single render with its own face pass); base loaded once, LoRAs swapped not reloaded",
        "goal_met": all(r["ratio"] <= r["goal_ratio"] and r["lora_loads_after_first"] == 0 for r in results)
        and with_face_pass["ratio"] <= with_face_pass["goal_ratio"]
        and with_face_pass["faces_redrawn"] == 2
        and with_face_pass["single_faces_redrawn"] == 1,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
