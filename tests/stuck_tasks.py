"""A watchdog for tests on an event loop: when a test is still running long after it should have finished,
print every task of its loop with the line it is waiting on, so that a hang which pytest-timeout reports only
as "the loop is idle in select()" names the await that never returns."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def describe_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """Each pending task of ``loop`` and its stack (read from another thread: a diagnostic snapshot)."""
    out = io.StringIO()
    for task in list(asyncio.all_tasks(loop)):
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=12, file=out)
    return out.getvalue()


@contextmanager
def report_stuck_tasks(loop: asyncio.AbstractEventLoop, after_s: float) -> Iterator[None]:
    """While inside: if ``after_s`` seconds pass, write the loop's tasks to stderr (once)."""
    done = threading.Event()

    def watch() -> None:
        if not done.wait(after_s):
            sys.stderr.write(f"=== still running after {after_s:.0f} s; the loop's tasks ===\n")
            sys.stderr.write(describe_tasks(loop))
            sys.stderr.flush()

    thread = threading.Thread(target=watch, name="stuck-task-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
