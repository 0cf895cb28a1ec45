"""The HTTP API's rig: a real `photogen api` app on 127.0.0.1 over the embedded backends (SQLite order store
and queues, a local blob store), real keys made by storage.api_store, an aiohttp client.

No GPU here: where a test needs an order finished, ``agent_finishes`` applies the agent's started and done
events through storage.lifecycle.apply_event, the function the bot's delivery cog calls for a real agent's
events (the real agent is exercised by tests/gpu_agent and tests/e2e)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.api.server import start_api
from bot.backends import Backends, open_backends
from cloud.messages import Event, RenderJob, TrainJob, decode, new_id
from storage import api_store, keys, lifecycle
from storage.contracts import EventKind, JobKind
from storage.settings import Settings, load_settings

DEMO_PHOTOS = Path(__file__).resolve().parents[2] / "photogen" / "assets" / "demo_photos"


def api_settings(tmp: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp}/photogen.db",
        "queue_url": f"sqlite:///{tmp}/queue.db",
        "blob_url": f"file://{tmp}/blobs",
        "min_good_photos": 5,
        "webhook_poll_s": 0.05,
        "webhook_retry_base_s": 0.1,
        "webhook_timeout_s": 2.0,
        "webhook_allow_private": True,  # the tests' receivers listen on 127.0.0.1
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class Api:
    b: Backends
    base: str
    http: aiohttp.ClientSession

    def key(self, tenant: str, scopes: list[str] | None = None) -> str:
        if not api_store.tenant_exists(self.b.engine, tenant):
            api_store.create_tenant(self.b.engine, tenant, tenant)
        return api_store.create_key(self.b.engine, tenant, scopes or list(api_store.SCOPES)).token

    async def call(
        self, method: str, path: str, key: str | None, **kw: Any
    ) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            body = await resp.json(content_type=None) if resp.content_type == "application/json" else {}
            return resp.status, body, resp.headers


@asynccontextmanager
async def serve(tmp_path: Path, **overrides: object) -> AsyncIterator[Api]:
    """The API on 127.0.0.1 (a free port) over fresh embedded backends with these settings."""
    settings = api_settings(tmp_path, **overrides)
    b = open_backends(settings)
    runner, base = await start_api(b, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        yield Api(b, base, http)
    await runner.cleanup()
    b.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(tmp_path) as served:
        yield served


def ready_model(b: Backends, tenant: str) -> tuple[str, str]:
    """(subject id, model id) of a trained model of a new subject of ``tenant``: a training order placed as
    the API places one (bot/api/service.py, photo checks aside) and finished by the agent's events."""
    from bot.services import jobs

    subject = api_store.new_subject(b.engine, tenant)
    order_id, job_id, model_id = new_id(), new_id(), new_id()
    token = lifecycle.new_subject_token(b.engine)
    job = jobs.train_job(
        b.settings,
        job_id=job_id,
        order_id=order_id,
        user_id=subject,
        model_id=model_id,
        photo_keys=[keys.photo_key(subject, order_id, 0)],
        token=token,
        class_word="person",
    )
    lifecycle.create_order(
        b.engine,
        order_id=order_id,
        job_id=job_id,
        user_id=subject,  # type: ignore[arg-type]
        guild_id=api_store.tenant_guild(tenant),  # type: ignore[arg-type]
        channel_id=None,
        kind=JobKind.TRAIN,
        cost=0,
        params={"name": "m"},
        job=job.model_dump(mode="json"),
        limits=lifecycle.Limits(max_concurrent=10, daily_quota=100, starting_credits=0),
        model=lifecycle.NewModel(
            model_id, "m", "person", token, b.settings.base_model, keys.model_key(subject, model_id)
        ),
    )
    lifecycle.mark_queued(b.engine, order_id)
    agent_finishes(b, order_id)
    return subject, model_id


def agent_finishes(b: Backends, order_id: str, *, fail: bool = False) -> None:
    """The agent's events for the order's job (stand-in for a GPU): started, then done (its outputs stored
    under their real keys) or failed."""
    order = lifecycle.get_order(b.engine, order_id)
    job_id = lifecycle.job_id_of(b.engine, order_id)
    assert order is not None and job_id is not None
    kind = JobKind(order.kind)
    base = {"job_id": job_id, "order_id": order_id, "job_kind": kind}
    lifecycle.apply_event(b.engine, Event(kind=EventKind.STARTED, **base), price_per_hour=0.0, advice_after=3)
    if fail:
        done = Event(kind=EventKind.FAILED, error={"code": "oom", "message": "out of memory"}, **base)
    elif kind == JobKind.TRAIN:
        model_key = keys.model_key(order.user_id, order.model_id)
        b.blobs.put(model_key, b"lora")
        done = Event(kind=EventKind.DONE, model_key=model_key, output_keys=[model_key], **base)
    else:
        renders = [
            keys.render_key(order.user_id, job_id, n) for n in range(int(order.params.get("count", 1)))
        ]
        for n, k in enumerate(renders):
            b.blobs.put(k, b"\x89PNG picture %d" % n)
        done = Event(kind=EventKind.DONE, render_keys=renders, output_keys=renders, **base)
    lifecycle.apply_event(b.engine, done, price_per_hour=0.0, advice_after=3)


def queued_jobs(b: Backends, queue: str) -> list[TrainJob | RenderJob]:
    q = b.queues.train if queue == "train" else b.queues.render
    kind = TrainJob if queue == "train" else RenderJob
    found: list[TrainJob | RenderJob] = []
    for lease in q.receive(10, 0.0, 30):
        found.append(decode(lease.body, kind))
        q.release(lease, 0)
    return found
