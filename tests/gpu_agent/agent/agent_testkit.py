"""Helpers of the agent tests: job builders, the event log, agents in a thread or as processes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from cloud.messages import Event, RenderJob, RenderSpec, TrainJob, TrainParams, decode, new_id
from cloud.queues import Queues
from gpu_agent.agent import Agent
from storage import keys
from storage.blobs.base import BlobStore
from storage.settings import Settings

REPO = Path(__file__).resolve().parents[3]


# --- jobs ----------------------------------------------------------------------------------------------------


def png(seed: int, size: int = 64) -> bytes:
    img = Image.new("RGB", (size, size), ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    for x in range(0, size, 8):  # some structure, so the VAE sees edges
        for y in range(size):
            img.putpixel((x, y), (255, 255, 255))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def train_job(blobs: BlobStore, *, steps: int = 4, renders: int = 0, with_photos: bool = True) -> TrainJob:
    params = TrainParams(
        steps=steps, resolution=64, rank=4, prior_preservation=False, train_text_encoder=False
    )
    job = _train_job(blobs, [png(n) for n in range(3)] if with_photos else None, params, "person")
    return job.model_copy(
        update={"renders": [RenderSpec(prompt="a photo of {subject}", count=1)] * (1 if renders else 0)}
    )


def _train_job(
    blobs: BlobStore, photos: list[bytes] | None, params: TrainParams, class_word: str
) -> TrainJob:
    """A TrainJob of ``photos`` stored under a new order (None: three photo keys with nothing stored)."""
    user, order = f"u{new_id()[:8]}", f"o{new_id()[:8]}"
    photo_keys = [keys.photo_key(user, order, n) for n in range(3 if photos is None else len(photos))]
    for key, data in zip(photo_keys, photos or [], strict=False):
        blobs.put(key, data, content_type="image/jpeg")
    return TrainJob(
        job_id=f"j{new_id()[:12]}",
        order_id=order,
        user_id=user,
        model_id=f"m{new_id()[:8]}",
        photo_keys=photo_keys,
        subject_token="sks",
        class_word=class_word,
        base_model="tiny-sd",
        params=params,
    )


def render_job(*, count: int = 1, model_keys: list[str] | None = None, **fields: Any) -> RenderJob:
    values: dict[str, Any] = {
        "job_id": f"r{new_id()[:12]}",
        "order_id": f"o{new_id()[:8]}",
        "user_id": f"u{new_id()[:8]}",
        "model_keys": model_keys or [],
        "subject": "sks person",
        "base_model": "tiny-sd",
        "prompt": "a photo of {subject}",
        "count": count,
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance": 5.0,
    }
    values.update(fields)
    return RenderJob(**values)


def door_crops(resolution: int, count: int = 5) -> list[bytes]:
    """The crops the bot stores for the fresh five demo photos (01 and 04 frame the same portrait)."""
    from gpu_agent.photos import PhotoCheckConfig, check_photos
    from photogen.assets import demo_photos
    from storage.settings import load_settings

    config = PhotoCheckConfig.from_settings(load_settings(train_resolution=resolution))
    report = check_photos(demo_photos()[:count], config)
    assert report.accepted
    return [p.crop_jpeg for p in report.good]


def job_for(blobs: BlobStore, crops: list[bytes], resolution: int, **params: Any) -> TrainJob:
    """A training of these stored crops (``params``: TrainParams fields over the defaults)."""
    train = TrainParams(**{"steps": 4, "resolution": resolution, "rank": 4, **params})
    return _train_job(blobs, crops, train, "woman")


# --- events --------------------------------------------------------------------------------------------------


class EventLog:
    """Drains the events queue as the bot would, keeping every Event in arrival order."""

    def __init__(self, queues: Queues) -> None:
        self.queues = queues
        self.events: list[Event] = []

    def poll(self) -> list[Event]:
        got = []
        while True:
            leases = self.queues.events.receive(10, wait_s=0, lease_s=30)
            if not leases:
                return got
            for lease in leases:
                event = decode(lease.body, Event)
                self.queues.events.ack(lease)
                got.append(event)
                self.events.append(event)

    def wait_for(self, check: Callable[[Event], bool], timeout: float, what: str = "event") -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if check(event):
                    return event
            for event in self.poll():
                if check(event):
                    return event
            time.sleep(0.1)
        kinds = [(e.job_id, e.kind) for e in self.events]
        raise AssertionError(f"no {what} within {timeout} s; events so far: {kinds}")

    def of(self, job_id: str, kind: str | None = None) -> list[Event]:
        self.poll()
        return [e for e in self.events if e.job_id == job_id and (kind is None or e.kind == kind)]


# --- running agents -------------------------------------------------------------------------------------------


class AgentThread:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.agent.run(self.stop_event)
        except BaseException as err:
            self.error = err

    def start(self) -> AgentThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.agent.metrics_port is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 60) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not stop"
        if self.error is not None:
            raise self.error


def agent_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a `python -m gpu_agent` process these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUE_", "BLOB_", "AGENT_", "IMDS_"))}
    for name in (
        "queue_url",
        "blob_url",
        "agent_work_dir",
        "model_cache_dir",
        "device",
        "imds_url",
        "agent_metrics_port",
        "agent_lease_s",
        "agent_heartbeat_s",
        "agent_poll_wait_s",
        "agent_progress_every_s",
        "agent_retry_delay_s",
        "queue_max_receives",
        "checkpoint_every_steps",
        "render_size",
        "render_steps",
        "imds_poll_s",
        "aws_endpoint_url",
        "agent_drain_s",
        "queue_prefix",
        "agent_check_photos",
    ):
        value = getattr(settings, name)
        if isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        elif value is not None:
            env[name.upper()] = str(value)
    env["PYTHONPATH"] = str(REPO)
    env["LOG_LEVEL"] = "INFO"
    env.update(extra)
    return env


def start_agent_process(settings: Settings, log_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    # cwd: a folder without a .env, so only the environment configures the agent.
    return subprocess.Popen(
        [sys.executable, "-m", "gpu_agent"],
        env=agent_env(settings, **extra),
        cwd=log_path.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
