"""The admin dashboard of the bot's HTTP side, the sampler that feeds it, and the store's Prometheus figures.

Wiring (bot side; docs/DASHBOARD.md has the whole of it)::

    from bot import dashboard
    dashboard.add_routes(http_app, settings=settings, engine=b.engine, queues=b.queues)
    collector = dashboard.register_store_metrics(b.engine)          # once per process
    task = asyncio.create_task(dashboard.run_sampler(settings, b.engine, b.queues, stop_event=stop,
                                                     agents_seen=b.agents_seen, collector=collector))
"""

from bot.dashboard.metrics import StoreCollector, register_store_metrics
from bot.dashboard.routes import add_routes
from bot.dashboard.sampler import run_sampler, sample_once

__all__ = ["StoreCollector", "add_routes", "register_store_metrics", "run_sampler", "sample_once"]
