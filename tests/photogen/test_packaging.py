"""What `pip install .` (and so the Docker images) ships: the page templates travel as package data, and the
installed package renders its pages from them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "cloud", "gpu_agent", "storage", "photogen")
TEMPLATES = {
    "photogen/templates/report.html.j2",
    "bot/dashboard/templates/dashboard.html.j2",
    "bot/dashboard/templates/chart.svg.j2",
}

RENDER_BOTH = """
import sys
from pathlib import Path
import photogen.report, bot.dashboard.page
from photogen.report import Report, render_html
from bot.dashboard.page import render_page
assert Path(photogen.report.__file__).is_relative_to(sys.argv[1]), photogen.report.__file__
assert Path(bot.dashboard.page.__file__).is_relative_to(sys.argv[1]), bot.dashboard.page.__file__
report = render_html(Report("tiny-sd", True, [], [], [], [], [], {}))
page = render_page({"generated_at": 7200.0, "window_s": 3600.0, "queue_depth": {}, "jobs_per_hour": [],
                    "time_to_result": {}, "failures_by_code": {}, "fleet_size": {},
                    "jobs": {"finished": 0, "failed": 0},
                    "cost": {"per_order": [], "mean_per_order_usd": {}, "gpu_seconds": 0.0, "usd": 0.0}})
assert "Photogen demo report" in report and "Photogen — fleet dashboard" in page
print("rendered")
"""


@pytest.mark.timeout(120)
def test_the_wheel_ships_the_templates_and_renders_from_them(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=100,
    )
    (wheel,) = (tmp_path / "dist").glob("photogen-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert set(z.namelist()) >= TEMPLATES
        z.extractall(tmp_path / "installed")
    # The installed copy alone (not this checkout) renders both pages.
    installed = tmp_path / "installed"
    out = subprocess.run(
        [sys.executable, "-c", RENDER_BOTH, str(installed)],
        cwd=installed,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0 and "rendered" in out.stdout, out.stderr[-2000:]
