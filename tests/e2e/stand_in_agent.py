"""`photogen agent` with a STAND-IN AT THE ENGINE BOUNDARY, for the end-to-end scenario (test_studio_scenario.py).

Run as a process: ``python tests/e2e/stand_in_agent.py``, configured like `photogen agent` (environment, .env).
It is the real agent (queues, blobs, leases, spot watcher, likeness judge, safety gate, reporter) driving the real
engine (tiny random models: training, class images, previews, renders, the x4 upscaler); only what a tiny random
model cannot make is replaced, at the JobRunner seam (gpu_agent.agent.runner):

- a portrait render ("portrait of …", txt2img) runs for real and then returns real photos instead of the tiny
  model's noise: a photo of someone else (Lionel Messi) for SOMEONE_ELSE_SEED, a photo of the member (Eileen
  Collins, the demo photos) that NudeNet's real model finds a covered chest in for FLAGGED_SEED, and otherwise a
  photo of the member that is none of her training photos. The training's first picture is the member too.
- every trainer configuration the agent runs is appended to ``AGENT_WORK_DIR/train-configs.jsonl`` (the exact
  TrainConfig built from the TrainJob, before the real training runs on it).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

from cloud.messages import RenderJob
from gpu_agent.agent.engine_runner import EngineRunner, train_config
from gpu_agent.agent.runner import RenderOutcome, TrainOutcome, TrainRequest
from photogen.assets import demo_photos
from storage.settings import load_settings

SIDE = 160
FACES = Path(__file__).resolve().parents[1] / "data" / "faces"
SOMEONE_ELSE_SEED = 7
FLAGGED_SEED = 9
FLAGGED_LABEL = "FEMALE_BREAST_COVERED"
"""A class NudeNet's real 320n model detects on FLAGGED (0.63) and on none of the other pictures: the test
configures the agent's gate to block it, since no explicit picture can live in this repository."""
CONFIGS_FILE = "train-configs.jsonl"


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _demo(name: str) -> Image.Image:
    return Image.open(io.BytesIO(dict(demo_photos())[name])).convert("RGB")


def _sized(img: Image.Image) -> Image.Image:
    return img.resize((SIDE, round(SIDE * img.height / img.width)), Image.Resampling.LANCZOS)


# The member in a picture that is none of her training photos: mirrored, brighter, reframed.
MEMBER = _png(
    _sized(
        ImageEnhance.Brightness(ImageOps.mirror(_demo("01-portrait.jpg")))
        .enhance(1.15)
        .crop((30, 0, 512, 482))
    )
)
# Someone else: Lionel Messi (tests/data/faces, with its source), his face cropped to fill the picture.
SOMEONE_ELSE = _png(_sized(Image.open(FACES / "messi5.jpg").convert("RGB").crop((190, 20, 310, 140))))
FLAGGED = _png(
    _sized(
        ImageEnhance.Brightness(
            ImageOps.mirror(_demo("05-tilted.jpg").rotate(-10, resample=Image.Resampling.BICUBIC))
        ).enhance(0.8)
    )
)


def picture_for(job: RenderJob, seed: int) -> bytes | None:
    """The stand-in's picture for one seed of a render job; None keeps the tiny model's own."""
    if job.mode != "txt2img":
        return None  # upscales and variations stay the real engine's
    if job.prompt.startswith("portrait of"):
        return {SOMEONE_ELSE_SEED: SOMEONE_ELSE, FLAGGED_SEED: FLAGGED}.get(seed, MEMBER)
    return MEMBER  # the training's first picture


class StandInEngine(EngineRunner):
    def train(self, request: TrainRequest, **kwargs: object) -> TrainOutcome:  # type: ignore[override]
        config = train_config(
            request.job, checkpoint_every=request.checkpoint_every, low_memory=request.low_memory
        )
        record = {
            "job_id": request.job.job_id,
            "photos": len(request.photos),
            "config": config.model_dump(mode="json"),
        }
        with (Path(self.settings.agent_work_dir) / CONFIGS_FILE).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return super().train(request, **kwargs)  # type: ignore[arg-type]

    def render(
        self,
        job: RenderJob,
        loras: list[Path],
        source: bytes | None,  # type: ignore[override]
        **kwargs: object,
    ) -> RenderOutcome:
        real = super().render(job, loras, source, **kwargs)  # type: ignore[arg-type]
        pictures = [picture_for(job, job.seed + i) for i in range(job.count)]
        if all(p is None for p in pictures):
            return real
        return RenderOutcome(
            pngs=[p or real.pngs[i] for i, p in enumerate(pictures)], flagged=[None] * job.count
        )


def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Path(settings.agent_work_dir).mkdir(parents=True, exist_ok=True)
    # Test rig only: import the engine's libraries now (the real agent does on its first job, ~30 s on a busy
    # 2-core machine), so that the agent the spot drill hands the training to is warm, as on a warm pool.
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_upscale  # noqa: F401

    import gpu_agent.engine.render
    import gpu_agent.engine.training  # noqa: F401
    from gpu_agent.agent import run_agent

    logging.getLogger(__name__).info("engine libraries imported")

    run_agent(settings, runner=StandInEngine(settings))


if __name__ == "__main__":
    main()
