"""`photogen all`: run the bot and an agent as child processes, restart a child that dies (exponential
backoff, bounded), and record which children are up in a state file that the bot's /healthz reads."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("photogen.supervisor")

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
STABLE_S = 60.0  # a child that ran this long restarts after FIRST_DELAY_S again


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    delay_s: float = FIRST_DELAY_S
    restart_at: float | None = None
    last_exit: int | None = None

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Supervisor:
    children: list[Child]
    state_file: Path
    env: dict[str, str] = field(default_factory=dict)
    poll_s: float = 0.2
    stopping: bool = False

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env={**os.environ, **self.env})
        child.started, child.restart_at = time.monotonic(), None
        log.info("started %s (pid %s)", child.name, child.proc.pid)

    def write_state(self) -> None:
        state = {
            "children": {
                c.name: {
                    "up": c.up,
                    "pid": c.proc.pid if c.up and c.proc else None,
                    "restarts": c.restarts,
                    "last_exit": c.last_exit,
                }
                for c in self.children
            }
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_file)

    def step(self, now: float) -> bool:
        """One look at every child; True when the state changed."""
        changed = False
        for c in self.children:
            if c.proc is not None and c.restart_at is None and c.proc.poll() is not None:
                c.last_exit = c.proc.returncode
                if now - c.started >= STABLE_S:
                    c.delay_s = FIRST_DELAY_S
                c.restart_at = now + c.delay_s
                log.error("%s exited with %s; restarting in %.0f s", c.name, c.last_exit, c.delay_s)
                c.delay_s = min(c.delay_s * 2, MAX_DELAY_S)
                changed = True
            elif c.restart_at is not None and now >= c.restart_at:
                c.restarts += 1
                self.start(c)
                changed = True
        return changed

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for c in self.children:
            self.start(c)
        self.write_state()
        while not self.stopping:
            if self.step(time.monotonic()):
                self.write_state()
            time.sleep(self.poll_s)
        for c in self.children:
            if c.up and c.proc is not None:
                c.proc.send_signal(signal.SIGTERM)
        codes = [c.proc.wait() for c in self.children if c.proc is not None and c.restart_at is None]
        self.state_file.unlink(missing_ok=True)
        return max([0, *codes])
