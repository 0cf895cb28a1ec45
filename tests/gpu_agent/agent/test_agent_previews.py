"""The real agent sends previews while it trains and renders (real engine, tiny models, CPU)."""

from __future__ import annotations

from collections.abc import Callable

from agent_testkit import AgentThread, EventLog, render_job, train_job

from cloud.messages import encode
from cloud.queues import Queues
from gpu_agent.agent.engine_runner import EngineRunner
from storage import keys
from storage.blobs.base import BlobStore
from storage.settings import Settings

StartAgent = Callable[..., AgentThread]


def test_training_and_rendering_send_previews_under_the_members_prefix(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
) -> None:
    settings = make_settings(agent_preview_every_steps=2, agent_preview_min_interval_s=0)
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    train = train_job(blobs, steps=6)
    queues.train.send(encode(train))
    events.wait_for(lambda e: e.job_id == train.job_id and e.kind == "done", 180, "training done")
    previews = [
        e.progress for e in events.of(train.job_id, "progress") if e.progress and e.progress.preview_key
    ]
    # every 2 steps but the last (the finished model follows): steps 2 and 4
    assert [p.step for p in previews] == [2, 4]
    for p in previews:
        assert p.preview_key == keys.preview_key(train.user_id, train.job_id, p.step)
        assert p.preview_key.startswith(keys.user_prefix(train.user_id))
        assert blobs.get(p.preview_key)[:3] == b"\xff\xd8\xff"  # a JPEG the bot can attach
    final = events.of(train.job_id, "progress")[-1].progress
    assert final is not None and final.step == final.total == 6  # progress ends at 100 %

    render = render_job(steps=4)
    queues.render.send(encode(render))
    events.wait_for(lambda e: e.job_id == render.job_id and e.kind == "done", 120, "render done")
    shown = [
        e.progress for e in events.of(render.job_id, "progress") if e.progress and e.progress.preview_key
    ]
    assert shown and all(p.step < p.total for p in shown)
    assert all(blobs.exists(p.preview_key) for p in shown)
    agent.stop()


def test_previews_are_throttled_to_the_least_interval(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
) -> None:
    settings = make_settings(agent_preview_every_steps=1, agent_preview_min_interval_s=3600)
    agent = run_agent_thread(settings, runner=EngineRunner(settings), queues=queues, blobs=blobs)
    train = train_job(blobs, steps=5)
    queues.train.send(encode(train))
    events.wait_for(lambda e: e.job_id == train.job_id and e.kind == "done", 180, "training done")
    previews = [e for e in events.of(train.job_id, "progress") if e.progress and e.progress.preview_key]
    assert len(previews) == 1  # the first; the next ones fell inside the hour
    agent.stop()
