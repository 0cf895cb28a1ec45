"""The whole system across processes: the Discord-compatible sim (in the test), `photogen bot` and two
`photogen agent` processes, on the embedded backends or on SQS + S3 through moto's server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from photogen.discord_sim import DiscordSim
from storage import migrate
from storage.settings import Settings, load_settings

MANAGE_GUILD = 1 << 5


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class System:
    sim: DiscordSim
    settings: Settings
    tmp: Path
    guild: object
    channel: object
    members: dict[str, object]
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, *args: str, **env_extra: str) -> Proc:
        log = self.tmp / f"{name}.log"
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **env_extra}
        with open(log, "wb") as out:
            popen = subprocess.Popen([sys.executable, "-m", "photogen.cli", *args], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    async def wait_log(self, pattern: str, timeout: float) -> Proc:
        """The first live agent whose log shows ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.name.startswith("agent") and proc.popen.poll() is None and pattern in proc.text():
                    return proc
            await asyncio.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.text()[-3000:]}" for p in self.procs)
        raise AssertionError(f"no agent logged {pattern!r} within {timeout}s\n{logs}")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()


def _backend_settings(backend: str, tmp: Path, moto: str | None, name: str) -> dict[str, object]:
    if backend == "embedded":
        return dict(queue_url=f"sqlite:///{tmp / 'queue.db'}", blob_url=f"file://{tmp / 'blobs'}")
    assert moto is not None
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto).create_bucket(Bucket=name)
    return dict(queue_url="sqs://", blob_url=f"s3://{name}/photogen", aws_endpoint_url=moto, queue_prefix=name)


@pytest.fixture(params=["embedded", "aws"])
async def system(request: pytest.FixtureRequest, tmp_path: Path, unique_name: str) -> AsyncIterator[System]:
    moto = request.getfixturevalue("moto_endpoint") if request.param == "aws" else None
    sim = DiscordSim()
    await sim.start()
    guild = sim.add_guild("E2E Studio")
    admin = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    channel = sim.add_channel(guild, "studio")
    members = {"alice": sim.add_member(guild, "alice"), "bob": sim.add_member(guild, "bob"),
               "ada": sim.add_member(guild, "ada", roles=[admin])}
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'photogen.db'}",
        **_backend_settings(request.param, tmp_path, moto, unique_name),
        discord_api_base=sim.api_base, discord_gateway_url=sim.gateway_url, discord_token=SecretStr(sim.token),
        base_model="tiny-sd", model_cache_dir=str(tmp_path.parent / "models"),
        train_steps=24, train_resolution=64, render_steps=4, render_size=64, checkpoint_every_steps=4,
        agent_lease_s=6, agent_heartbeat_s=2, agent_poll_wait_s=1, agent_progress_every_s=1,
        agent_metrics_port=0, bot_http_port=0, bot_event_wait_s=0.5, starting_credits=100,
    )
    migrate(settings.database_url)
    system = System(sim, settings, tmp_path, guild, channel, members)
    try:
        yield system
    finally:
        system.stop_all()
        await sim.stop()
