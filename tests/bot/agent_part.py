"""The GPU agent's part in the bot's tests: no GPU agent runs here, so the test consumes the train/render
queues and answers with cloud.messages.Event messages and real output blobs — the agent's public contract, not
a mock of anything in the bot. A done event carries the agent's safety verdicts, taken here with the agent's
own checker (gpu_agent.agent.safety: NudeNet's real model on the stored pictures), unless a test passes
``safety=``."""

from __future__ import annotations

import io

from PIL import Image

from cloud.consumer import receive
from cloud.messages import ErrorInfo, Event, Progress, RenderJob, TrainJob, encode
from cloud.queues import Queues
from gpu_agent.agent.safety import SafetyGate
from storage import keys
from storage.blobs.base import BlobStore
from storage.settings import Settings


def picture(seed: int, size: tuple[int, int] = (64, 64)) -> bytes:
    img = Image.new("RGB", size, ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


class AgentPart:
    def __init__(self, queues: Queues, blobs: BlobStore, gate: SafetyGate | None = None) -> None:
        self.queues = queues
        self.blobs = blobs
        self.gate = gate or SafetyGate.from_settings(Settings.model_construct())  # the defaults, no .env

    def take_train(self, wait_s: float = 5.0) -> TrainJob:
        got = receive(self.queues.train, TrainJob, max_messages=1, wait_s=wait_s, lease_s=60)
        assert got, "no TrainJob was queued"
        lease, job = got[0]
        self.queues.train.ack(lease)
        return job

    def take_render(self, wait_s: float = 5.0) -> RenderJob:
        got = receive(self.queues.render, RenderJob, max_messages=1, wait_s=wait_s, lease_s=60)
        assert got, "no RenderJob was queued"
        lease, job = got[0]
        self.queues.render.ack(lease)
        return job

    def emit(self, job: TrainJob | RenderJob, kind: str, **fields: object) -> Event:
        if kind == "done" and "safety" not in fields:
            outputs: list[str] = fields.get("output_keys", [])  # type: ignore[assignment]
            stored = fields.get("render_keys") or [
                k for k in outputs if "/renders/" in k
            ]  # an old agent's event
            fields["safety"] = [self.gate.verdict(k, self.blobs.get(k)) for k in stored]
        event = Event(
            job_id=job.job_id,
            order_id=job.order_id,
            job_kind="train" if isinstance(job, TrainJob) else "render",
            kind=kind,  # type: ignore[arg-type]
            agent_id="test-agent",
            **fields,  # type: ignore[arg-type]
        )
        self.queues.events.send(encode(event))
        return event

    def progress(self, job: TrainJob | RenderJob, step: int, total: int, preview: bool = False) -> Event:
        preview_key = None
        if preview:
            preview_key = keys.preview_key(job.user_id, job.job_id, step)
            self.blobs.put(preview_key, picture(step), content_type="image/jpeg")
        return self.emit(
            job, "progress", progress=Progress(step=step, total=total, eta_s=10.0, preview_key=preview_key)
        )

    def finish_train(self, job: TrainJob) -> Event:
        self.emit(job, "started")
        self.progress(job, 5, 10)
        lora = keys.model_key(job.user_id, job.model_id)
        self.blobs.put(lora, b"not really safetensors, the bot never opens it")
        renders = []
        for n in range(sum(r.count for r in job.renders)):
            key = keys.render_key(job.user_id, job.job_id, n)
            self.blobs.put(key, picture(n), content_type="image/png")
            renders.append(key)
        return self.emit(job, "done", output_keys=[lora, *renders], model_key=lora, render_keys=renders)

    def finish_render(self, job: RenderJob, size: tuple[int, int] = (64, 64)) -> Event:
        self.emit(job, "started")
        outputs = []
        for n in range(job.count):
            key = keys.render_key(job.user_id, job.job_id, n)
            self.blobs.put(key, picture(job.seed + n, size), content_type="image/png")
            outputs.append(key)
        return self.emit(job, "done", output_keys=outputs, render_keys=outputs)

    def fail(self, job: TrainJob | RenderJob, message: str = "The GPU ran out of memory.") -> Event:
        return self.emit(job, "failed", error=ErrorInfo(code="oom", message=message))
