"""The bot's one way of doing something every so often: a ``discord.ext.tasks`` loop no round can end.

``tasks.Loop`` stops for good on any exception other than the reconnect kinds (OSError, aiohttp and gateway
errors), which it retries with backoff: a sampler that met a locked database once would never sample again.
A loop made here logs a failed round and runs the next one on time. Rounds start ``seconds`` apart (from the
start of one to the start of the next; a round longer than that is followed at once by the next).

Usage, in a cog::

    @periodic("dashboard sample")
    async def sample(self) -> None: ...

    async def cog_load(self) -> None:
        start(self.sample, seconds=self.bot.settings.metrics_sample_interval_s)

    async def cog_unload(self) -> None:
        await stop(self.sample)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from discord.ext import tasks

log = logging.getLogger(__name__)

Round = Callable[..., Awaitable[None]]


def periodic(what: str) -> Callable[[Round], tasks.Loop[Any]]:
    """A tasks.Loop (interval given by ``start``) of a round that is logged, never raised, when it fails."""

    def decorate(round_: Round) -> tasks.Loop[Any]:
        @functools.wraps(round_)  # the loop binds to the cog under the round's own name
        async def guarded(*args: Any, **kwargs: Any) -> None:
            try:
                await round_(*args, **kwargs)
            except Exception:
                log.exception("%s failed; trying again next round", what)

        return tasks.loop(seconds=60.0)(guarded)

    return decorate


def start(
    loop: tasks.Loop[Any], *, seconds: float, after: Callable[[], Awaitable[Any]] | None = None
) -> None:
    """Start ``loop`` with its first round now (or once ``after`` returns, e.g. ``bot.wait_until_ready``)."""
    loop.change_interval(seconds=seconds)
    if after is not None:
        loop.before_loop(_call(after))
    loop.start()


async def stop(*loops: tasks.Loop[Any]) -> None:
    """Cancel the loops and wait until their rounds have ended."""
    running = [task for task in (loop.get_task() for loop in loops) if task is not None]
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def _call(after: Callable[[], Awaitable[Any]]) -> Callable[..., Coroutine[Any, Any, None]]:
    async def before(*_bound: Any) -> None:  # tasks passes the cog when the loop is bound to one
        await after()

    return before
