"""The Agent in this process, on the embedded SQLite queue and the local blob store, with the real engine on the
tiny models — except where the point is time passing or a GPU failure, where a runner in the seam stands in."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from agent_testkit import AgentThread, EventLog, png, render_job, train_job

from cloud.messages import RenderJob, encode
from cloud.queues import Queues
from gpu_agent.agent import Interrupted, RenderOutcome
from gpu_agent.agent.engine_runner import EngineRunner
from storage import keys
from storage.blobs.base import BlobStore
from storage.settings import Settings
from tests.gpu_agent.fake_imds import FakeImds

StartAgent = Callable[..., AgentThread]


class SlowRunner:
    """A runner whose render takes ``seconds`` of wall time in small steps. Stands in for a long GPU job: what
    is under test is the lease and drain handling around it, not the pictures."""

    def __init__(self, seconds: float, step_s: float = 0.1, until_stopped: bool = False) -> None:
        self.seconds, self.step_s, self.until_stopped = seconds, step_s, until_stopped
        self.calls = 0
        self.stopped_at: int | None = None
        self.warm = False

    def train(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("not used")

    def render(
        self,
        job: RenderJob,
        loras: list[Path],
        source: bytes | None,
        *,
        progress: Any,
        should_stop: Any,
        low_memory: bool = False,
        **_: Any,
    ) -> RenderOutcome:
        self.calls += 1
        total = max(1, int(self.seconds / self.step_s))
        step = 0
        while self.until_stopped or step < total:
            if should_stop():
                self.stopped_at = step
                raise Interrupted(step)
            time.sleep(self.step_s)
            step += 1
            progress(min(step, total), total, None)
        return RenderOutcome(pngs=[png(job.seed + i) for i in range(job.count)])


class CountingRunner(EngineRunner):
    """The real engine runner, counting its calls (and, if asked, failing like a full GPU first)."""

    def __init__(self, settings: Settings, oom_times: int = 0) -> None:
        super().__init__(settings)
        self.render_calls: list[bool] = []
        self.oom_times = oom_times

    def render(self, job: RenderJob, loras: list[Path], source: bytes | None, **kwargs: Any) -> RenderOutcome:
        self.render_calls.append(bool(kwargs.get("low_memory")))
        if len(self.render_calls) <= self.oom_times:
            # No GPU here: the CUDA out-of-memory error is injected through the runner seam.
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().render(job, loras, source, **kwargs)


class BrokenRunner(SlowRunner):
    def render(self, *args: Any, **kwargs: Any) -> RenderOutcome:
        self.calls += 1
        raise RuntimeError("boom: token=sk-secret-123 at /home/agent/very/private/path")


def metrics_text(agent: AgentThread) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.agent.metrics_port}/metrics") as resp:
        return resp.read().decode()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_render_then_a_duplicate_delivery_does_no_new_work(
    settings: Settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread: StartAgent
) -> None:
    runner = CountingRunner(settings)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = render_job(count=2)
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 90, "done")
    assert done.output_keys == [keys.render_key(job.user_id, job.job_id, n) for n in range(2)]
    assert done.render_keys == done.output_keys and done.model_key is None  # typed: nobody parses the keys
    for key in done.output_keys:
        assert blobs.get(key)[:8] == b"\x89PNG\r\n\x1a\n"
    marker = json.loads(blobs.get(keys.done_marker_key(job.user_id, job.job_id)))
    assert marker["event_sent"] is True and marker["event"]["event_id"] == done.event_id
    kinds = [e.kind for e in events.of(job.job_id)]
    assert kinds[0] == "started" and kinds[-1] == "done" and "progress" in kinds
    assert done.gpu_seconds is not None and done.gpu_seconds > 0
    assert runner.warm

    queues.render.send(encode(job))  # the same job delivered again (a redelivery after a lost ack)
    wait_until(
        lambda: queues.render.depth().backlog == 0 and 'result="duplicate"' in metrics_text(agent),
        30,
        "the duplicate to be acknowledged",
    )
    assert len(runner.render_calls) == 1
    assert [e.kind for e in events.of(job.job_id)] == kinds  # no new event either

    text = metrics_text(agent)
    assert 'photogen_agent_jobs_total{kind="render",result="done"} 1.0' in text
    assert 'photogen_agent_jobs_total{kind="render",result="duplicate"} 1.0' in text
    assert 'photogen_agent_job_duration_seconds_count{kind="render"} 1.0' in text
    assert 'photogen_agent_queue_wait_seconds_count{kind="render"} 2.0' in text
    assert "photogen_agent_gpu_seconds_total" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.agent.metrics_port}/healthz") as resp:
        assert json.loads(resp.read())["status"] == "ok"
    agent.stop()


def test_malformed_and_photoless_jobs_fail_and_the_agent_keeps_serving(
    settings: Settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread: StartAgent
) -> None:
    agent = run_agent_thread(settings, runner=SlowRunner(0.2), queues=queues, blobs=blobs)
    queues.train.send(json.dumps({"v": 1, "job_id": "jbad1", "order_id": "obad1", "photo_keys": "nope"}))
    queues.render.send("this is not json {")
    photoless = train_job(blobs, with_photos=False)
    queues.train.send(encode(photoless))
    good = render_job()
    queues.render.send(encode(good))

    bad = events.wait_for(lambda e: e.job_id == "jbad1" and e.kind == "failed", 30, "malformed failed")
    assert bad.error is not None and bad.error.code == "bad_job" and bad.order_id == "obad1"
    missing = events.wait_for(
        lambda e: e.job_id == photoless.job_id and e.kind == "failed", 30, "photos failed"
    )
    assert missing.error is not None and missing.error.code == "photos_missing"
    assert "3 of your 3 photos" in missing.error.message
    events.wait_for(lambda e: e.job_id == good.job_id and e.kind == "done", 30, "the good job done")

    assert queues.train.dead_letter_depth() == 1  # the malformed train job
    assert queues.render.dead_letter_depth() == 1  # the body that is not JSON
    # the photoless job was told and acked, not retried (the ack follows the event: wait for it)
    wait_until(lambda: queues.train.depth().backlog == 0, 10, "the train message to be acked")
    assert not blobs.exists(keys.model_key(photoless.user_id, photoless.model_id))
    assert 'result="malformed"} 1.0' in metrics_text(agent)
    agent.stop()


def test_heartbeats_keep_a_20_second_job_from_redelivery(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
) -> None:
    settings = make_settings(agent_lease_s=5, agent_heartbeat_s=1, agent_progress_every_s=5)
    runner = SlowRunner(20, step_s=0.25)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = render_job()
    queues.render.send(encode(job))
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "started", 30, "started")
    stolen = []
    # A rival agent polls all along: with the lease lapsing after 5 s it would get the message without renewals.
    while not events.of(job.job_id, "done"):
        stolen += queues.render.receive(1, wait_s=0.5, lease_s=30)
    assert stolen == []
    assert runner.calls == 1
    assert len(events.of(job.job_id, "started")) == 1
    assert len(events.of(job.job_id, "done")) == 1
    progress = events.of(job.job_id, "progress")
    assert 2 <= len(progress) <= 6, "progress events must be throttled to one per few seconds"
    assert progress[-1].progress is not None and progress[-1].progress.eta_s is not None
    wait_until(lambda: queues.render.depth().backlog == 0, 10, "the render message to be acked")
    agent.stop()


def test_an_out_of_memory_error_is_retried_once_with_memory_saving_settings(
    settings: Settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread: StartAgent
) -> None:
    runner = CountingRunner(settings, oom_times=1)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = render_job(count=2)
    queues.render.send(encode(job))
    done = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 90, "done after the retry")
    assert len(done.output_keys) == 2
    assert runner.render_calls == [False, True]

    runner.render_calls.clear()
    runner.oom_times = 99  # from now on the GPU is always full
    job2 = render_job()
    queues.render.send(encode(job2))
    failed = events.wait_for(lambda e: e.job_id == job2.job_id and e.kind == "failed", 30, "failed")
    assert failed.error is not None and failed.error.code == "out_of_memory"
    assert runner.render_calls == [False, True]
    # the agent acks a message after sending its event: wait for the ack, do not race it
    wait_until(lambda: queues.render.depth().backlog == 0, 10, "the render message to be acked")
    assert queues.render.dead_letter_depth() == 0
    agent.stop()


def test_a_poison_job_is_dead_lettered_after_max_receives_and_the_member_told(
    settings: Settings, queues: Queues, blobs: BlobStore, events: EventLog, run_agent_thread: StartAgent
) -> None:
    assert queues.render.max_receives == 2  # type: ignore[attr-defined]
    runner = BrokenRunner(0)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = render_job()
    queues.render.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 30, "failed")
    assert runner.calls == 2  # a retry first, then the verdict
    assert len(events.of(job.job_id, "failed")) == 1
    assert failed.error is not None and failed.error.code == "internal"
    assert "secret" not in failed.error.message and "/home" not in failed.error.message
    assert queues.render.dead_letter_depth() == 1
    wait_until(lambda: queues.render.depth().backlog == 0, 10, "the render message to be acked")
    assert 'result="retry"} 1.0' in metrics_text(agent)
    agent.stop()


def test_a_lost_lease_stops_the_job_and_writes_no_result(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
) -> None:
    settings = make_settings(agent_lease_s=5, agent_heartbeat_s=1)
    runner = SlowRunner(0, until_stopped=True)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = render_job()
    queues.render.send(encode(job))
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "started", 30, "started")
    queues.render.purge()  # the message is taken away: the next renewal fails
    wait_until(lambda: 'result="lease_lost"} 1.0' in metrics_text(agent), 15, "the lease to be given up")
    assert runner.stopped_at is not None
    assert not blobs.exists(keys.done_marker_key(job.user_id, job.job_id))
    assert list(blobs.list(keys.render_prefix(job.user_id, job.job_id))) == []
    assert [e.kind for e in events.of(job.job_id)] == ["started"] + ["progress"] * (
        len(events.of(job.job_id)) - 1
    )
    agent.stop()


def test_spot_notice_lets_a_render_finish_inside_the_drain_budget(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
    fake_imds: FakeImds,
) -> None:
    settings = make_settings(imds_url=fake_imds.url, imds_poll_s=0.1, agent_drain_s=30)
    agent = run_agent_thread(settings, runner=SlowRunner(2), queues=queues, blobs=blobs)
    job = render_job()
    queues.render.send(encode(job))
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "started", 30, "started")
    fake_imds.terminate()
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "done", 30, "done")
    agent.thread.join(10)
    assert not agent.thread.is_alive(), "a drained agent with nothing left must stop"
    later = render_job()
    queues.render.send(encode(later))
    assert queues.render.depth().visible == 1  # nobody took it: the agent takes no new jobs
    assert agent.agent.metrics.registry.get_sample_value("photogen_agent_spot_interruptions_total") == 1.0


def test_spot_notice_releases_a_render_that_cannot_finish_in_time(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
    fake_imds: FakeImds,
) -> None:
    settings = make_settings(imds_url=fake_imds.url, imds_poll_s=0.1, agent_drain_s=0.5)
    agent = run_agent_thread(settings, runner=SlowRunner(0, until_stopped=True), queues=queues, blobs=blobs)
    job = render_job()
    queues.render.send(encode(job))
    events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "started", 30, "started")
    noticed = time.monotonic()
    fake_imds.terminate()
    preempted = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "preempted", 30, "preempted")
    assert time.monotonic() - noticed < 10
    assert preempted.error is not None and "another" in preempted.error.message
    (lease,) = queues.render.receive(1, wait_s=2)  # released with visibility 0: another agent can take it now
    assert json.loads(lease.body)["job_id"] == job.job_id
    agent.thread.join(10)
    assert not agent.thread.is_alive()
    assert not events.of(job.job_id, "done")


def test_photos_the_checks_reject_fail_before_any_training(
    make_settings: Callable[..., Settings],
    queues: Queues,
    blobs: BlobStore,
    events: EventLog,
    run_agent_thread: StartAgent,
) -> None:
    settings = make_settings(agent_check_photos=True, min_good_photos=2)
    runner = SlowRunner(0)
    agent = run_agent_thread(settings, runner=runner, queues=queues, blobs=blobs)
    job = train_job(blobs)  # three striped squares: no face in any of them
    queues.train.send(encode(job))
    failed = events.wait_for(lambda e: e.job_id == job.job_id and e.kind == "failed", 60, "failed")
    assert failed.error is not None and failed.error.code == "photos_rejected"
    assert "Only 0 of 3 photos" in failed.error.message
    assert runner.calls == 0
    wait_until(lambda: queues.train.depth().backlog == 0, 10, "the train message to be acked")
    agent.stop()
