"""docs/benchmarks/gpu.md from bench/gpu.sh's JSON lines: one row per figure, its goal and verdict, then each
line in full.

    python bench/gpu_report.py LINES.jsonl OUT.md [--seconds N] [--command TEXT] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

# The headline number of each kind of figure (the first key a line has), and what it is measured against.
HEADLINES = (
    ("time_per_step_ratio", "trainer / reference time per step (goal ≤ 0.6 on a GPU)"),
    ("swap_share", "LoRA swap / one render (goal ≤ 0.10)"),
    ("throughput_ratio", "mixed-member batch / sequential throughput (goal ≥ 3 on a GPU)"),
)


def read_lines(path: Path) -> list[dict]:
    figures = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.startswith("{"):
            continue
        try:
            figures.append(json.loads(line))
        except json.JSONDecodeError:
            figures.append({"figure": f"line {n}", "error": "not JSON: " + line[:200]})
    return figures


def row(figure: dict) -> str:
    name = figure.get("figure") or figure.get("bench") or "?"
    if "missing" in figure:
        return f"| {name} | missing | {figure['missing']} | |"
    if "error" in figure:
        return f"| {name} | error | {figure['error']} | |"
    for key, meaning in HEADLINES:
        if key in figure:
            value = figure[key]
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            met = figure.get("goal_met")
            return (
                f"| {name} | {shown} | {meaning} | {'' if met is None else ('met' if met else 'not met')} |"
            )
    met = figure.get("goal_met")
    return f"| {name} | see below | | {'' if met is None else ('met' if met else 'not met')} |"


def write_report(figures: list[dict], out: Path, *, seconds: int, command: str, device: str) -> None:
    machine = device
    if device.startswith("cuda"):
        try:
            import torch

            machine = f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
        except Exception as err:
            machine = f"cuda ({type(err).__name__})"
    else:
        machine = (
            f"{platform.machine()} CPU (dry run: tiny models, a few steps — checks the pieces, not speed)"
        )
    lines = [
        "# GPU benchmark (`bench/gpu.sh`)",
        "",
        f"Written by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {seconds} s, {machine}.",
        "Full-size random SD-1.5 (512 px) and SDXL (1024 px) shapes (bench/shapes.py); training at equal",
        "precision (both bf16); see docs/BENCHMARKS.md for the CPU figures beside these.",
        "",
        "| figure | value | what | goal |",
        "|---|---|---|---|",
        *(row(f) for f in figures),
        "",
        "## Lines as printed",
        "",
        "```",
        *(json.dumps(f) for f in figures),
        "```",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lines", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--command", default="bench/gpu.sh")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    write_report(
        read_lines(args.lines), args.out, seconds=args.seconds, command=args.command, device=args.device
    )


if __name__ == "__main__":
    main()
