"""bench/gpu.sh runs end to end in --dry mode on this CPU (tiny models, a few steps), so the one GPU run a
session may get does not die on a typo: every piece it calls prints its JSON figure line, and the report is
written from them. Speed is not asserted (benchmarks, not timed tests)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_gpu_report", REPO / "bench" / "gpu_report.py")
assert _spec and _spec.loader
gpu_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_report)


def test_gpu_sh_dry_runs_every_piece_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--dry", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    errors = [f for f in figures if "error" in f]
    assert not errors, (errors, done.stderr[-3000:])
    names = {f.get("figure") for f in figures}
    assert {
        "train_sd15_both_bf16_dry",
        "train_sd15_dry",
        "train_sdxl_both_bf16_dry",
        "train_sdxl_dry",
        "lora_swap_sd15_dry",
        "lora_swap_sdxl_dry",
    } <= names
    for f in figures:
        if f.get("figure", "").startswith("train_") and "both_bf16" in f["figure"]:
            assert f["both_bf16"]["precision"] == {"ours": "bf16", "reference": "bf16"}
            assert f["ours_s"] > 0 and f["reference_s"] > 0
        if f.get("figure", "").startswith("lora_swap_"):
            assert f["render_s"] > 0 and f["swap_s"] > 0 and f["swap_share"] > 0
    # the mixed-member batch: its figure when bench/batch.py exists, else a clear "missing" line
    batch = [f for f in figures if f.get("figure") == "batch" or f.get("bench") == "batch"]
    assert len(batch) == 1
    assert ("missing" in batch[0]) != (REPO / "bench" / "batch.py").is_file()
    report = out.read_text()
    assert report.startswith("# GPU benchmark") and "dry run" in report
    for name in names - {None}:
        assert f"| {name} |" in report


def test_the_report_says_what_is_missing_or_failed_and_each_verdict(tmp_path: Path) -> None:
    lines = tmp_path / "lines.jsonl"
    lines.write_text(
        "\n".join(
            [
                json.dumps({"figure": "train_sd15", "time_per_step_ratio": 0.55, "goal_met": True}),
                json.dumps({"figure": "lora_swap_sdxl", "swap_share": 0.2, "goal_met": False}),
                json.dumps({"figure": "batch", "missing": "bench/batch.py is not in this checkout"}),
                json.dumps({"figure": "train_sdxl", "error": "ran past its 130 s"}),
                "{not json",
            ]
        )
    )
    out = tmp_path / "gpu.md"
    gpu_report.write_report(
        gpu_report.read_lines(lines), out, seconds=12, command="bench/gpu.sh", device="cpu"
    )
    text = out.read_text()
    assert "| train_sd15 | 0.550 | trainer / reference time per step (goal ≤ 0.6 on a GPU) | met |" in text
    assert "| lora_swap_sdxl | 0.200 | LoRA swap / one render (goal ≤ 0.10) | not met |" in text
    assert "| batch | missing | bench/batch.py is not in this checkout | |" in text
    assert "| train_sdxl | error | ran past its 130 s | |" in text
    assert "| line 5 | error | not JSON: {not json | |" in text
