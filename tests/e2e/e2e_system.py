"""Pieces of the end-to-end rig (imported by the test and by conftest.py). The whole system across processes:
the Discord-compatible sim (in the test), `photogen bot` and two
`photogen agent` processes, on the embedded backends or on SQS + S3 through moto's server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from photogen.discord_sim import DiscordSim
from storage.settings import Settings

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

    def spawn(
        self, name: str, *args: str, program: tuple[str, ...] = ("-m", "photogen.cli"), **env_extra: str
    ) -> Proc:
        """``photogen ARGS`` (or ``python PROGRAM ARGS``) as a process with the system's settings."""
        log = self.tmp / f"{name}.log"
        env = {
            **os.environ,
            **self.settings.to_env(),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            **env_extra,
        }
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, *program, *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
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
