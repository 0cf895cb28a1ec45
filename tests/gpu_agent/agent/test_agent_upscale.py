"""The U button through the agent: a RenderJob in mode "upscale" runs the learned x4 upscaler the settings
name (the tiny random StableDiffusionUpscalePipeline here) on the stored picture, and the result is 4x its
size."""

from __future__ import annotations

import io

from agent_testkit import EventLog, png, render_job
from PIL import Image

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from gpu_agent.engine.pngmeta import read_png_params
from storage import keys
from storage.blobs.base import BlobStore


def test_an_upscale_job_runs_the_learned_upscaler_at_4x(
    make_settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread
) -> None:
    settings = make_settings(upscaler_model="tiny-upscaler")
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    job = render_job(mode="upscale", width=128, height=128)
    source = keys.render_key(job.user_id, "earlier-job", 0)
    blobs.put(source, png(3, size=64), content_type="image/png")
    job = job.model_copy(update={"source_key": source})
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 180, "done")
    stored = blobs.get(done.output_keys[0])
    with Image.open(io.BytesIO(stored)) as img:
        assert img.size == (256, 256)  # 4x the 64 px source, not the 2x of the re-denoise fallback
    assert read_png_params(stored).sampler == "x4 upscaler tiny-upscaler"
    assert [v.key for v in done.safety] == done.output_keys
    agent.stop()
