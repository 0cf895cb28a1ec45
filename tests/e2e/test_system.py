"""Two members train at once, render and click buttons while one agent is killed with SIGKILL mid-training.
At the end every order is delivered exactly once, no blob is orphaned and the dead-letter queues are empty."""

from __future__ import annotations

import asyncio
import re
import signal

from e2e_system import System
from sqlmodel import select

from cloud.queues import open_queues
from photogen.assets import demo_photos
from storage import Image, Job, Order, TrainedModel, open_engine, read_session
from storage.blobs import open_blob_store

TRAINING_TIMEOUT = 420


def _agent(system: System, n: int):
    return system.spawn(f"agent{n}", "agent", AGENT_WORK_DIR=str(system.tmp / f"agent{n}"))


async def _train(system: System, member: str, name: str):
    inter = await system.sim.invoke_command(
        system.members[member],
        system.channel,
        "train",
        {"name": name, "class_word": "woman"},
        attachments=demo_photos(),
    )
    await inter.wait_response()
    status = await inter.wait_original(lambda m: not m.loading, timeout=60)
    assert status.embeds and status.embeds[0]["title"] == "Training order accepted", status.embeds
    return status


async def _imagine(system: System, member: str, model_name: str, seed: int):
    who = system.members[member]
    choices = await system.sim.autocomplete(
        who, system.channel, "imagine", {"prompt": "x", "model": model_name}, "model"
    )
    assert [c["name"] for c in choices] == [model_name], choices  # only the member's own model
    before = {m.id for m in system.sim.messages(system.channel)}
    await (
        await system.sim.invoke_command(
            who,
            system.channel,
            "imagine",
            {"prompt": "a photo of {subject}", "model": choices[0]["value"], "count": 2, "seed": seed},
        )
    ).wait_response()
    return await system.sim.wait_for_message(
        system.channel,
        lambda m: (
            m.id not in before
            and f"<@{who.id}>" in m.content
            and any(c.startswith("pg:up:") for c in m.custom_ids())
        ),
        timeout=240,
    )


async def test_two_members_one_agent_killed_every_order_delivered_once(system: System) -> None:
    system.spawn("bot", "bot")
    await system.sim.wait_for_bot(timeout=60)
    _agent(system, 1), _agent(system, 2)

    statuses = await asyncio.gather(
        _train(system, "alice", "alice-model"), _train(system, "bob", "bob-model")
    )

    # One agent dies mid-training, after at least one checkpoint: SIGKILL, no chance to clean up.
    victim = await system.wait_log("checkpoint at step", timeout=TRAINING_TIMEOUT)
    killed_job = re.search(r"checkpoint at step \d+ of job (\w+)", victim.text()).group(1)
    victim.popen.send_signal(signal.SIGKILL)
    victim.popen.wait()
    _agent(system, 3)  # the supervisor (compose's restart policy, the ASG) brings a new one

    for name in ("alice-model", "bob-model"):
        await system.sim.wait_for_message(
            system.channel,
            lambda m, n=name: "trained and ready" in m.content and f"**{n}**" in m.content,
            timeout=TRAINING_TIMEOUT,
        )
    resumed = [p for p in system.procs if f"job {killed_job} resumes from the checkpoint" in p.text()]
    assert resumed, "the killed job was not resumed from its checkpoint"
    step = int(
        re.search(rf"job {killed_job} resumes from the checkpoint at step (\d+)", resumed[0].text()).group(1)
    )
    assert step > 0

    results = await asyncio.gather(
        _imagine(system, "alice", "alice-model", 1), _imagine(system, "bob", "bob-model", 2)
    )
    alice_result = results[0]
    before = {m.id for m in system.sim.messages(system.channel)}
    up = next(c for c in alice_result.custom_ids() if c.startswith("pg:up:") and c.endswith(":0"))  # U1
    await system.sim.click(system.members["alice"], alice_result, up)
    alice = system.members["alice"]
    await system.sim.wait_for_message(  # the upscale's result: alice's pictures with their buttons
        system.channel,
        lambda m: (
            m.id not in before
            and m.author.bot
            and bool(m.attachments)
            and f"<@{alice.id}>" in m.content
            and any(c.startswith(("pg:up:", "pg:rr:", "pg:del:")) for c in m.custom_ids())
        ),
        timeout=240,
    )
    # bob may not re-roll alice's pictures
    reroll = next(c for c in alice_result.custom_ids() if c.startswith("pg:rr:"))
    refused = await system.sim.click(system.members["bob"], alice_result, reroll)
    await refused.wait_response()
    answer = await refused.wait_original(lambda m: not m.loading, timeout=20)
    assert "belong to the member who made the pictures" in answer.content + str(answer.embeds)
    assert answer.ephemeral
    await asyncio.sleep(2)  # let late events and outbox rows settle

    _assert_every_order_delivered_once(system, statuses)
    _assert_no_orphan_blobs(system)
    _assert_queues_drained(system)


def _assert_every_order_delivered_once(system: System, statuses: list) -> None:
    engine = open_engine(system.settings.database_url)
    with read_session(engine) as s:
        orders = s.exec(select(Order)).all()
    engine.dispose()
    assert len(orders) == 5, [(o.kind, o.status) for o in orders]  # 2 trainings, 2 renders, 1 upscale
    assert all(o.status == "delivered" for o in orders), [
        (o.id, o.kind, o.status, o.error_message) for o in orders
    ]
    messages = system.sim.messages(system.channel)
    for name in ("alice-model", "bob-model"):
        assert (
            sum(1 for m in messages if "trained and ready" in m.content and f"**{name}**" in m.content) == 1
        )
    for order in (o for o in orders if o.kind == "render"):
        posts = [
            m
            for m in messages
            if any(
                c.startswith(f"pg:up:{order.id}:") or c.startswith(f"pg:rr:{order.id}:")
                for c in m.custom_ids()
            )
        ]
        assert len(posts) == 1, f"render order {order.id} posted {len(posts)} times"
    assert not system.sim.unhandled


def _assert_no_orphan_blobs(system: System) -> None:
    engine = open_engine(system.settings.database_url)
    with read_session(engine) as s:
        order_ids = {o.id for o in s.exec(select(Order)).all()}
        model_ids = {m.id for m in s.exec(select(TrainedModel)).all()}
        job_ids = {j.id for j in s.exec(select(Job)).all()}
        image_keys = {i.blob_key for i in s.exec(select(Image)).all()}
    engine.dispose()
    blobs = open_blob_store(system.settings)
    keys = list(blobs.list(""))
    assert keys
    for key in keys:
        parts = key.split("/")
        if parts[0] == "users" and parts[2] == "photos":
            assert parts[3] in order_ids, key
        elif parts[0] == "users" and parts[2] == "models":
            assert parts[3] in model_ids, key
        elif parts[0] == "users" and parts[2] == "renders":
            assert parts[3] in job_ids or key in image_keys, key
        elif parts[0] == "users" and parts[2] == "done":
            assert parts[3].removesuffix(".json") in job_ids, key
        elif parts[0] == "users" and parts[2] == "previews":  # a job's previews (expire after a day on S3)
            assert parts[3] in job_ids, key
        elif parts[:2] == ["shared", "class-images"]:  # made once, shared by every order (docs/TRAINING.md)
            assert int(parts[-1].removesuffix(".png")) < system.settings.train_class_images, key
        else:
            raise AssertionError(f"orphan blob {key} (checkpoints of finished jobs must be deleted)")


def _assert_queues_drained(system: System) -> None:
    queues = open_queues(system.settings)
    for q in queues.all():
        depth = q.depth()
        assert (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 0), (q.name, depth)
        assert q.dead_letter_depth() == 0, q.name
    queues.close()
