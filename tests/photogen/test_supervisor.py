"""`photogen all` restarts a child that dies, and the bot's /healthz is unhealthy while one is down."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import SecretStr

from photogen.supervisor import FIRST_DELAY_S, Child, Supervisor
from storage.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


async def _until(predicate, timeout: float, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout}s")


def _state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["children"]
    except (OSError, ValueError):
        return {}


async def test_a_killed_child_comes_back_and_healthz_is_unhealthy_meanwhile(tmp_path: Path) -> None:
    from photogen.discord_sim import DiscordSim

    async with DiscordSim() as sim:
        sim.add_channel(sim.add_guild("Supervised"), "studio")
        port = _free_port()
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path}/p.db",
            queue_url=f"sqlite:///{tmp_path}/q.db",
            blob_url=f"file://{tmp_path}/blobs",
            discord_api_base=sim.api_base,
            discord_gateway_url=sim.gateway_url,
            discord_token=SecretStr(sim.token),
            bot_http_port=port,
            agent_metrics_port=0,
            agent_work_dir=str(tmp_path / "agent"),
            model_cache_dir=str(tmp_path / "models"),
        )
        state_file = tmp_path / "photogen-all.json"
        proc = subprocess.Popen(  # noqa: ASYNC220 - starts `photogen all` and returns; the test stops it
            [sys.executable, "-m", "photogen.cli", "all"],
            env={**os.environ, **settings.to_env()},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            await _until(lambda: _healthz(port)[0] == 200, timeout=90)
            agent_pid = _state(state_file)["agent"]["pid"]
            os.kill(agent_pid, signal.SIGKILL)
            _, body = await _until(lambda: (s := _healthz(port))[0] == 503 and s, timeout=10)
            assert body["children"]["agent"]["up"] is False and body["discord"] is True
            await _until(lambda: _healthz(port)[0] == 200, timeout=30)
            agent = _state(state_file)["agent"]
            assert (
                agent["restarts"] == 1 and agent["pid"] != agent_pid and agent["last_exit"] == -signal.SIGKILL
            )

            bot_pid = _state(state_file)["bot"]["pid"]
            os.kill(bot_pid, signal.SIGKILL)
            await _until(
                lambda: _healthz(port)[0] != 200, timeout=10
            )  # nothing answers while the bot is down
            await _until(lambda: _healthz(port)[0] == 200, timeout=90)
            assert _state(state_file)["bot"]["restarts"] == 1
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-3000:]
        assert "agent exited with -9; restarting in 1 s" in text


def test_backoff_doubles_up_to_a_bound_and_resets_after_a_stable_run(tmp_path: Path) -> None:
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
    sup = Supervisor([child], tmp_path / "state.json")
    sup.start(child)
    child.proc.wait()
    delays = []
    now = child.started
    for _ in range(8):
        assert sup.step(now)  # noticed the exit
        delays.append(child.restart_at - now)
        now = child.restart_at
        assert sup.step(now)  # restarted
        child.proc.wait()
    assert delays[:3] == [FIRST_DELAY_S, 2 * FIRST_DELAY_S, 4 * FIRST_DELAY_S]
    assert max(delays) == 30.0 and child.restarts == 8 and child.last_exit == 3
    sup.step(child.started + 61)  # this run lasted over a minute: back to the first delay
    assert child.restart_at - (child.started + 61) == FIRST_DELAY_S
