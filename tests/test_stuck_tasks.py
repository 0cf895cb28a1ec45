"""The test rig's hang reporter names the await a stuck test is waiting on."""

from __future__ import annotations

import asyncio

import pytest
from stuck_tasks import report_stuck_tasks


async def test_a_stuck_await_is_reported_with_its_line(capfd: pytest.CaptureFixture[str]) -> None:
    never = asyncio.Event()

    async def waits_for_a_reply_that_never_comes() -> None:
        await never.wait()

    task = asyncio.create_task(waits_for_a_reply_that_never_comes(), name="the-stuck-one")
    with report_stuck_tasks(asyncio.get_running_loop(), after_s=0.2):
        await asyncio.sleep(0.6)
    task.cancel()
    err = capfd.readouterr().err
    assert "still running after 0 s" in err
    assert "the-stuck-one" in err and "waits_for_a_reply_that_never_comes" in err
    assert "await never.wait()" in err  # the very line it waits on


async def test_nothing_is_reported_when_the_test_ends_in_time(capfd: pytest.CaptureFixture[str]) -> None:
    with report_stuck_tasks(asyncio.get_running_loop(), after_s=5):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert "still running" not in capfd.readouterr().err
