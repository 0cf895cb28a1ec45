"""Safe to post, the agent's half: every picture an agent stores is checked by NudeNet's real detector (the
ONNX model inside the nudenet wheel, run offline by onnxruntime) and the done event carries one verdict per
picture.

What is real here: the classifier, its weights, the photos it looks at (the public-domain astronaut portrait
the demo ships), the agent, queue and blob store, and the tiny random diffusion models. What cannot be real:
an explicit picture (none can live in this repository), so the "flagged" path is exercised by configuring a
label the real model really detects on the real photo (FACE_FEMALE) as blocked — the same code path a nude
picture takes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from agent_testkit import EventLog, render_job
from PIL import Image

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.agent.runner import JobError
from gpu_agent.agent.safety import CHECKER, SafetyGate
from storage.blobs.base import BlobStore
from storage.settings import Settings
from tests.gpu_agent.engine.test_render_upscale_safety import save_sd1_with_safety_checker

PORTRAIT = Path(__file__).resolve().parents[3] / "photogen" / "assets" / "demo_photos" / "01-portrait.jpg"


def portrait_png() -> bytes:
    out = io.BytesIO()
    with Image.open(PORTRAIT) as img:
        img.convert("RGB").save(out, "PNG")
    return out.getvalue()


def test_the_real_detector_passes_a_safe_photo_and_flags_what_is_configured_as_blocked(
    settings: Settings,
) -> None:
    png = portrait_png()
    default = SafetyGate.from_settings(settings)
    found = default.detections(png)
    faces = [d for d in found if d["class"] == "FACE_FEMALE"]
    assert faces and faces[0]["score"] > 0.6, f"the real model finds the astronaut's face: {found}"

    safe = default.verdict("users/u/renders/j/0.png", png)
    assert not safe.flagged and safe.score == 0.0 and safe.labels == [] and safe.checker == CHECKER

    strict = SafetyGate(threshold=settings.safety_threshold, blocked_labels=frozenset({"FACE_FEMALE"}))
    flagged = strict.verdict("users/u/renders/j/0.png", png)
    assert flagged.flagged and flagged.labels == ["FACE_FEMALE"]
    assert flagged.score == pytest.approx(faces[0]["score"], abs=1e-4)

    above = SafetyGate(threshold=0.99, blocked_labels=frozenset({"FACE_FEMALE"}))
    assert not above.verdict("k", png).flagged  # the threshold setting decides


def test_a_missing_classifier_fails_the_job_instead_of_passing_pictures(tmp_path: Path) -> None:
    broken = SafetyGate(model_path=str(tmp_path / "missing.onnx"), blocked_labels=frozenset({"ANUS_EXPOSED"}))
    with pytest.raises(JobError) as err:
        broken.verdict("k", portrait_png())
    assert err.value.code == "safety_unavailable" and not err.value.permanent
    assert "missing.onnx" not in err.value.message  # no paths in what the member sees


def test_every_stored_picture_has_a_verdict_in_the_done_event(
    settings: Settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread
) -> None:
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = render_job(count=2)
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 120, "done")
    assert [v.key for v in done.safety] == done.output_keys and len(done.output_keys) == 2
    assert all(v.checker == CHECKER and not v.withheld for v in done.safety)
    agent.stop()


def test_pictures_the_base_models_safety_checker_blanked_are_reported_withheld(
    make_settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread, tmp_path: Path
) -> None:
    folder = save_sd1_with_safety_checker(tmp_path / "sd1-checked", flags_everything=True)
    settings = make_settings()
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = render_job(count=1, base_model=str(folder))
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 120, "done")
    (verdict,) = done.safety
    assert verdict.flagged and verdict.withheld and verdict.key == done.output_keys[0]
    agent.stop()
