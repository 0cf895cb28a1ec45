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


def test_a_job_waits_for_a_running_preload(monkeypatch: object) -> None:
    # Two threads importing diffusers' lazy modules at once broke a real first job ("cannot import name
    # 'StableDiffusionPipeline'"): the engine runner waits for the preload before it imports anything.
    import time

    from gpu_agent.agent import stack

    def slow_import(name: str) -> object:
        time.sleep(0.5)
        return stack

    monkeypatch.setattr(stack.importlib, "import_module", slow_import)  # type: ignore[attr-defined]
    began = time.monotonic()
    thread = stack.preload_ml_stack(("one", "two"))
    assert stack.preloading()  # what the agent's /healthz reports as engine_preloading
    stack.wait_for_preload()
    assert not thread.is_alive() and time.monotonic() - began >= 0.9 and not stack.preloading()
    stack.wait_for_preload()  # none running: returns at once
