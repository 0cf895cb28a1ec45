"""The operators' periodic work: dashboard samples (and the store figures /metrics serves), fleet alerts,
credit expiry (CREDITS_EXPIRE_DAYS) and the event-loop lag probe, each a loop of bot/periodic.py (a failed
round is logged; the next runs on time)."""

from __future__ import annotations

import asyncio

from discord.ext import commands

from bot import alerts, dashboard, metrics
from bot.app import PhotogenBot
from bot.periodic import periodic, start, stop
from storage import credits

LAG_PROBE_S = 0.1
CREDIT_EXPIRY_S = 3600.0  # how often unspent old grants are expired (idempotent: a round finds nothing twice)


class Periodic(commands.Cog):
    def __init__(self, bot: PhotogenBot) -> None:
        self.bot = bot
        self.collector = dashboard.process_store_metrics(bot.backends.engine)
        self.alert_runner = alerts.AlertRunner(self._post_alert, bot.settings.alert_cooldown_s)

    async def cog_load(self) -> None:
        settings, ready = self.bot.settings, self.bot.wait_until_ready
        start(self.sample, seconds=settings.metrics_sample_interval_s, after=ready)
        start(self.alert, seconds=settings.alert_interval_s, after=ready)
        start(self.probe_lag, seconds=0)  # the round is the sleep it measures
        if settings.credits_expire_days:
            start(self.expire_credits, seconds=CREDIT_EXPIRY_S, after=ready)

    async def cog_unload(self) -> None:
        await stop(self.sample, self.alert, self.probe_lag, self.expire_credits)

    @periodic("metrics sampling")
    async def sample(self) -> None:
        b = self.bot.backends
        await dashboard.sample_round(
            self.bot.settings, b.engine, b.queues, agents_seen=b.agents_seen, collector=self.collector
        )

    @periodic("alert round")
    async def alert(self) -> None:
        b = self.bot.backends
        await alerts.alert_round(self.bot.settings, b.engine, b.queues, self.alert_runner)

    @periodic("credit expiry")
    async def expire_credits(self) -> None:
        await self.bot.run_blocking(
            credits.expire_all, self.bot.backends.engine, self.bot.settings.credits_expire_days
        )

    @periodic("loop lag probe")
    async def probe_lag(self) -> None:
        """A sleep of LAG_PROBE_S: how much later than asked it wakes is how long the event loop was held."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - began - LAG_PROBE_S))

    async def _post_alert(self, channel_id: int, text: str) -> None:
        await self.bot.get_partial_messageable(channel_id).send(text)


async def setup(bot: PhotogenBot) -> None:
    await bot.add_cog(Periodic(bot))
