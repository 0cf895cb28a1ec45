"""Cancel, model deletion and /forget-me reach the GPU: the real agent (tiny models, this process) against the
bot's real services on one SQLite order store, queue file and blob folder. The bot side applies the agent's
events as its delivery cog does (bot.services.delivery), without Discord: what is under test is the agent."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from agent_testkit import AgentThread, EventLog, png, render_job

from bot.backends import Backends, open_backends
from bot.checks import GuildRules
from bot.services import deletion, delivery, member_orders
from cloud.messages import Event, RenderJob, TrainJob, TrainParams, decode, encode
from cloud.queues import Queues
from storage import keys, lifecycle, order_store, read_session, standing, tombstones
from storage.blobs import open_blob_store
from storage.blobs.base import BlobStore
from storage.settings import Settings

StartAgent = Callable[..., AgentThread]
MEMBER = 4242
STOP_WITHIN_S = 10.0  # "within seconds": the check runs every step and every second


class WatchedBlobs(BlobStore):
    """The real local blob store, noting when each put started (proof that nothing came after a cancel)."""

    def __init__(self, inner: BlobStore) -> None:
        self.inner = inner
        self.puts: list[tuple[float, str]] = []

    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        self.puts.append((time.monotonic(), key))
        self.inner.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)

    def url(self, key: str, expires_s: int = 3600) -> str:
        return self.inner.url(key, expires_s)


class BotSide:
    """The bot's event consumer, in the test's thread: applies every agent event once, keeps them."""

    def __init__(self, b: Backends) -> None:
        self.b = b
        self.events: list[Event] = []

    def pump(self) -> None:
        for lease, event in delivery.receive_events(self.b, 0):
            delivery.apply_event(self.b, event)
            self.b.queues.events.ack(lease)
            self.events.append(event)

    def wait_for(self, check: Callable[[Event], bool], timeout: float, what: str) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            for event in self.events:
                if check(event):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {what} within {timeout} s: {[(e.job_id, e.kind) for e in self.events]}")

    def until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def of(self, job_id: str, kind: str) -> list[Event]:
        self.pump()
        return [e for e in self.events if e.job_id == job_id and e.kind == kind]


@pytest.fixture
def studio_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Settings:
    return make_settings(
        database_url=f"sqlite:///{tmp_path / 'photogen.db'}",
        train_steps=1000,
        train_resolution=64,
        train_rank=4,
        base_model="tiny-sd",
        checkpoint_every_steps=3,
        deletion_resweep_s=2,
        starting_credits=50,
        train_class_images=2,
    )


@pytest.fixture
def b(studio_settings: Settings) -> Iterator[Backends]:
    backends = open_backends(studio_settings)
    yield backends
    backends.close()


def place_training(b: Backends, user_id: int = MEMBER) -> member_orders.Placed:
    return member_orders.place_train_order(
        b,
        guild_id=1,
        channel_id=2,
        user_id=user_id,
        name="me",
        class_word="person",
        crops=[png(n) for n in range(3)],
        rules=GuildRules(guild_id=1),
    )


def credits(b: Backends, user_id: int = MEMBER) -> int:
    with read_session(b.engine) as s:
        return standing.credits_of(s, 1, user_id)  # guild 1: where place_training orders


def member_keys(blobs: BlobStore, user_id: object = MEMBER) -> list[str]:
    """Every stored key that names the member: their prefix, and any other key with their id in it."""
    return [k for k in blobs.list("") if f"/{user_id}/" in f"/{k}/" or f"/{user_id}." in f"/{k}"]


def queue_empty(b: Backends) -> bool:
    return b.queues.train.depth().backlog + b.queues.render.depth().backlog == 0  # backlog counts leased ones


def start_agent(run_agent_thread: StartAgent, settings: Settings) -> tuple[AgentThread, WatchedBlobs]:
    blobs = WatchedBlobs(open_blob_store(settings))
    return run_agent_thread(settings, blobs=blobs), blobs


def wait_for_checkpoint(bot: BotSide, b: Backends, job_id: str) -> None:
    bot.until(
        lambda: b.blobs.exists(keys.checkpoint_prefix(MEMBER, job_id) + "LATEST"),
        120,
        "the training's first checkpoint in the store",
    )


@pytest.mark.timeout(240)
def test_cancel_mid_training_stops_the_agent_within_seconds_and_refunds_once(
    b: Backends, studio_settings: Settings, run_agent_thread: StartAgent
) -> None:
    bot = BotSide(b)
    placed = place_training(b)
    charged = studio_settings.train_credit_cost
    assert credits(b) == 50 - charged
    agent, watched = start_agent(run_agent_thread, studio_settings)
    wait_for_checkpoint(bot, b, placed.job_id)
    assert lifecycle.get_order(b.engine, placed.order_id).status == "training"

    cancelled_at = time.monotonic()
    result = member_orders.cancel_order(b, placed.order_id, actor_id=MEMBER, as_admin=False)
    cancel_returned = time.monotonic()
    assert result.refunded == charged

    stopped = bot.wait_for(
        lambda e: e.job_id == placed.job_id and e.kind == "failed",
        STOP_WITHIN_S,
        "the agent's terminal event",
    )
    assert time.monotonic() - cancelled_at < STOP_WITHIN_S
    assert stopped.error is not None and stopped.error.code == "cancelled"
    bot.until(lambda: queue_empty(b), 10, "the job to be acknowledged, not released for a retry")
    # Nothing the agent wrote after the cancel returned; nothing of the order left in the store.
    late = [key for at, key in watched.puts if at > cancel_returned]
    assert late == [], f"uploaded after the cancel: {late}"
    assert member_keys(b.blobs) == []
    assert not bot.of(placed.job_id, "done")
    progress = [e.progress.step for e in bot.of(placed.job_id, "progress") if e.progress]
    assert max(progress) < studio_settings.train_steps  # it did stop: the training never ran to its end
    # The order stays cancelled, refunded exactly once, and the member is told nothing more.
    order = lifecycle.get_order(b.engine, placed.order_id)
    assert order.status == "cancelled"
    assert credits(b) == 50
    assert lifecycle.pending_outbox(b.engine) == []
    with read_session(b.engine) as s:
        row = order_store.get_order(s, placed.order_id)
        assert row.credits_refunded == charged
    agent.stop()
    assert list((Path(studio_settings.agent_work_dir) / "jobs").glob("*")) == []  # local checkpoints gone


@pytest.mark.timeout(240)
def test_deleting_a_model_in_training_stops_the_job_and_nothing_of_it_comes_back(
    b: Backends, studio_settings: Settings, run_agent_thread: StartAgent
) -> None:
    bot = BotSide(b)
    placed = place_training(b)
    (model,) = lifecycle.list_models(b.engine, MEMBER)
    agent, watched = start_agent(run_agent_thread, studio_settings)
    wait_for_checkpoint(bot, b, placed.job_id)

    assert member_orders.delete_model(b, MEMBER, model.id) == "me"
    deleted_at = time.monotonic()
    assert (
        lifecycle.get_order(b.engine, placed.order_id).status == "cancelled"
    )  # refunded: the model never came
    assert credits(b) == 50
    stopped = bot.wait_for(
        lambda e: e.job_id == placed.job_id and e.kind == "failed",
        STOP_WITHIN_S,
        "the agent's terminal event",
    )
    assert stopped.error is not None and stopped.error.code == "cancelled"
    bot.until(lambda: queue_empty(b), 10, "the job to be acknowledged")
    assert [key for at, key in watched.puts if at > deleted_at] == []
    assert member_keys(b.blobs) == []
    assert lifecycle.list_models(b.engine, MEMBER) == []
    assert credits(b) == 50 and lifecycle.pending_outbox(b.engine) == []
    agent.stop()


def _quick_training(blobs: BlobStore, user_id: int) -> TrainJob:
    order, job_id = "oseed", "jseed"
    photo_keys = [keys.photo_key(user_id, order, n) for n in range(3)]
    for n, key in enumerate(photo_keys):
        blobs.put(key, png(n), content_type="image/jpeg")
    return TrainJob(
        job_id=job_id,
        order_id=order,
        user_id=str(user_id),
        model_id="mseed",
        photo_keys=photo_keys,
        subject_token="sks",
        class_word="person",
        base_model="tiny-sd",
        params=TrainParams(steps=2, resolution=64, rank=4, prior_preservation=False),
    )


def _seed_model_and_render(bot: BotSide, b: Backends) -> Path:
    """An earlier model of the member, rendered once: the agent keeps its LoRA in its local cache."""
    b.queues.train.send(encode(_quick_training(b.blobs, MEMBER)))
    bot.wait_for(lambda e: e.job_id == "jseed" and e.kind == "done", 120, "the earlier model")
    render = RenderJob(
        job_id="rseed",
        order_id="orseed",
        user_id=str(MEMBER),
        model_keys=[keys.model_key(MEMBER, "mseed")],
        subject="sks person",
        base_model="tiny-sd",
        prompt="a photo of {subject}",
        width=64,
        height=64,
        steps=2,
    )
    b.queues.render.send(encode(render))
    bot.wait_for(lambda e: e.job_id == "rseed" and e.kind == "done", 120, "the earlier render")
    cache = Path(b.settings.agent_work_dir) / "loras"
    assert [p for p in cache.rglob("*.safetensors")], "the LoRA was not cached locally"
    return cache


@pytest.mark.timeout(300)
def test_forget_me_during_training_leaves_nothing_of_the_member_in_the_store_or_on_the_agent(
    b: Backends, studio_settings: Settings, run_agent_thread: StartAgent
) -> None:
    bot = BotSide(b)
    agent, watched = start_agent(run_agent_thread, studio_settings)
    cache = _seed_model_and_render(bot, b)
    renderer = agent.agent.runner.renderer("tiny-sd")  # type: ignore[attr-defined]
    assert renderer.resident_models == ["mseed"]

    placed = place_training(b)
    wait_for_checkpoint(bot, b, placed.job_id)
    # A second order of the member waits in the queue behind the training.
    waiting = _quick_training(b.blobs, MEMBER).model_copy(update={"job_id": "jwait", "order_id": "owait"})
    b.queues.train.send(encode(waiting))

    receipt = member_orders.forget_user(b, MEMBER)
    forgotten_at = time.monotonic()
    assert receipt["orders"] >= 1
    stopped = bot.wait_for(
        lambda e: e.job_id == placed.job_id and e.kind == "failed",
        STOP_WITHIN_S,
        "the agent's terminal event",
    )
    assert stopped.error is not None and stopped.error.code == "forgotten"
    dropped = bot.wait_for(lambda e: e.job_id == "jwait" and e.kind == "failed", 30, "the queued job dropped")
    assert dropped.error is not None and dropped.error.code == "forgotten"
    assert not bot.of("jwait", "started")  # dropped on receipt, no GPU time
    bot.until(lambda: queue_empty(b), 10, "both jobs to be acknowledged")
    assert [key for at, key in watched.puts if at > forgotten_at] == []

    # The settle: the bot's re-sweep runs once DELETION_RESWEEP_S has passed.
    bot.until(
        lambda: deletion.run_due_sweeps(b) >= 0 and not list(b.blobs.list(keys.SWEEPS_PREFIX)),
        10,
        "the re-sweep to be due and done",
    )
    assert member_keys(b.blobs) == [keys.forgotten_user_key(MEMBER)]  # only the tombstone: an id, no data
    # Nor does any stored body name them (done markers, which list the member's files, lived outside users/).
    assert [k for k in b.blobs.list("") if str(MEMBER).encode() in b.blobs.get(k)] == []
    assert tombstones.is_forgotten(b.blobs, MEMBER) and not tombstones.is_forgotten(b.blobs, 7)
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert renderer.resident_models == []  # nor held in the GPU's memory
    assert list((Path(studio_settings.agent_work_dir) / "jobs").glob("*")) == []
    assert lifecycle.list_orders(b.engine, MEMBER) == []
    agent.stop()


@pytest.mark.timeout(120)
def test_cancelled_orders_waiting_in_the_queue_are_dropped_without_work(
    b: Backends, studio_settings: Settings, run_agent_thread: StartAgent
) -> None:
    bot = BotSide(b)
    placed = place_training(b)
    assert member_orders.cancel_order(b, placed.order_id, actor_id=MEMBER, as_admin=False).refunded > 0
    assert tombstones.is_cancelled(b.blobs, placed.order_id)
    other = RenderJob(
        job_id="rother",
        order_id="oother",
        user_id="77",
        base_model="tiny-sd",
        prompt="a cat",
        width=64,
        height=64,
        steps=2,
    )
    b.queues.render.send(encode(other))  # someone else's order is served as before
    agent, watched = start_agent(run_agent_thread, studio_settings)

    dropped = bot.wait_for(lambda e: e.job_id == placed.job_id and e.kind == "failed", 30, "the drop")
    assert dropped.error is not None and dropped.error.code == "cancelled"
    bot.wait_for(lambda e: e.job_id == "rother" and e.kind == "done", 90, "the other member's render")
    assert not bot.of(placed.job_id, "started")
    bot.until(lambda: queue_empty(b), 10, "the dropped job to be acknowledged")
    assert [key for _, key in watched.puts if key.startswith(keys.user_prefix(MEMBER))] == []
    assert credits(b) == 50 and lifecycle.get_order(b.engine, placed.order_id).status == "cancelled"
    agent.stop()


@pytest.mark.timeout(240)
def test_an_idle_agent_drops_and_unloads_the_lora_of_a_deleted_model(
    b: Backends, studio_settings: Settings, run_agent_thread: StartAgent
) -> None:
    bot = BotSide(b)
    agent, _ = start_agent(run_agent_thread, studio_settings)
    agent.agent.lora_check_s = 0.5  # the agent checks once a minute; the test does not wait that long
    cache = _seed_model_and_render(bot, b)
    renderer = agent.agent.runner.renderer("tiny-sd")  # type: ignore[attr-defined]
    assert renderer.resident_models == ["mseed"]
    b.blobs.delete_prefix(
        keys.model_prefix(MEMBER, "mseed")
    )  # what member_orders.delete_model does to the files
    bot.until(lambda: not [p for p in cache.rglob("*") if p.is_file()], 10, "the local copy to be dropped")
    assert renderer.resident_models == []
    agent.stop()


def test_the_agent_drops_local_lora_copies_whose_model_was_deleted(blobs: BlobStore, tmp_path: Path) -> None:
    from gpu_agent.agent.lora_cache import LoraCache

    cache = LoraCache(tmp_path / "loras")
    kept, deleted = keys.model_key("u1", "m1"), keys.model_key("u2", "m2")
    for key in (kept, deleted):
        blobs.put(key, key.encode())
        assert cache.path_for(key, key.encode()).read_bytes() == key.encode()
    blobs.delete_prefix(keys.model_prefix("u2", "m2"))
    assert cache.drop_stale(blobs) == [deleted]
    assert [p.parent.name for p in cache.files()] == ["u1"]
    assert cache.purge_member("u1") == [kept]
    assert cache.files() == []
    assert keys.model_of(kept) == "m1" and keys.model_of(keys.render_key("u1", "j1", 0)) is None


def test_sweeps_refuse_anything_outside_members_files_and_run_only_when_due(blobs: BlobStore) -> None:
    with pytest.raises(ValueError, match="only members' files"):
        tombstones.schedule_sweep(blobs, "s1", ["control/"], 0)
    blobs.put("users/u9/models/m/lora.safetensors", b"late upload")
    tombstones.schedule_sweep(blobs, "s2", [keys.user_prefix("u9")], time.time() + 3600)
    assert tombstones.run_due_sweeps(blobs) == 0 and blobs.exists("users/u9/models/m/lora.safetensors")
    assert tombstones.run_due_sweeps(blobs, now=time.time() + 7200) == 1
    assert list(blobs.list("users/")) == [] and list(blobs.list(keys.SWEEPS_PREFIX)) == []
    assert not tombstones.is_cancelled(blobs, "../x") and not tombstones.is_forgotten(blobs, "a/b")


@pytest.mark.timeout(60)
def test_cancel_mid_render_stops_it_and_stores_no_picture(
    settings: Settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread: StartAgent
) -> None:
    from test_agent_jobs import SlowRunner

    # A render that would run for minutes: the point is the agent stopping it, not the pictures.
    runner = SlowRunner(600, step_s=0.05, until_stopped=True)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = render_job(count=2)
    queues.render.send(encode(job))
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "progress", 30, "the render under way")
    tombstones.mark_cancelled(blobs, job.order_id)  # what the bot's cancel leaves for the agents
    cancelled_at = time.monotonic()
    stopped = events.wait_for(
        lambda e: e.job_id == job.job_id and e.kind == "failed", STOP_WITHIN_S, "the stop"
    )
    assert time.monotonic() - cancelled_at < STOP_WITHIN_S
    assert stopped.error is not None and stopped.error.code == "cancelled"
    assert runner.stopped_at is not None and runner.calls == 1
    deadline = time.monotonic() + 10
    while queues.render.depth().backlog and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queues.render.depth().backlog == 0  # acknowledged: never retried
    assert list(blobs.list(keys.user_prefix(job.user_id))) == []
    agent.stop()


def test_a_member_who_comes_back_after_forget_me_gets_their_new_orders_served(b: Backends) -> None:
    from bot.errors import Busy
    from gpu_agent.agent.cancellation import StopCheck

    old = place_training(b)
    old_job = decode(b.queues.train.receive(1, wait_s=0, lease_s=30)[0].body, TrainJob)
    assert old_job.issued_at is not None
    member_orders.forget_user(b, MEMBER)
    # Until the second deletion has run, a new order would lose its photos to it: refused, nothing charged.
    with pytest.raises(Busy, match="still being deleted"):
        place_training(b)
    assert tombstones.run_due_sweeps(b.blobs, now=time.time() + 3600) == 0
    new = place_training(b)
    assert new.order_id != old.order_id and credits(b) == 50 - b.settings.train_credit_cost
    new_job = decode(b.queues.train.receive(1, wait_s=0, lease_s=30)[0].body, TrainJob)
    # The agent drops the old job (placed before the forget) and serves the new one.
    assert StopCheck(b.blobs, old_job).check(fresh=True) == "forgotten"
    assert StopCheck(b.blobs, new_job).check(fresh=True) is None
    assert StopCheck(b.blobs, new_job.model_copy(update={"issued_at": None})).check(fresh=True) == "forgotten"
    assert (
        tombstones.withdrawn(b.blobs, user_id=MEMBER, order_id=new.order_id, issued_at=new_job.issued_at)
        is None
    )
