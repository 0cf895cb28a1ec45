"""The real agent imports its engine in the background once it is up, so a member's first training does not wait
for torch and diffusers to import (bench/first_picture.py: 37 s of it on a busy CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# A fresh interpreter (this test process has torch imported already): preload, join, list what is loaded.
SCRIPT = """
import json, sys
from gpu_agent.agent.stack import preload_ml_stack
before = "torch" in sys.modules
thread = preload_ml_stack()
alive = thread.daemon
thread.join(300)
print(json.dumps({"before": before, "daemon": alive, "after": sorted(
    m for m in ("torch", "diffusers.pipelines.stable_diffusion", "gpu_agent.engine.training",
                "gpu_agent.engine.render") if m in sys.modules)}))
"""


def test_preload_imports_the_engine_in_a_daemon_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=600, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] is False and seen["daemon"] is True
    assert seen["after"] == [
        "diffusers.pipelines.stable_diffusion",
        "gpu_agent.engine.render",
        "gpu_agent.engine.training",
        "torch",
    ]


def test_a_failing_preload_is_logged_not_raised(caplog: object) -> None:
    from gpu_agent.agent.stack import preload_ml_stack

    thread = preload_ml_stack(("gpu_agent.no_such_module_here",))
    thread.join(30)
    assert not thread.is_alive()
    assert "preloading gpu_agent.no_such_module_here failed" in caplog.text  # type: ignore[attr-defined]
