"""The admin dashboard of the bot's HTTP side, the sampler that feeds it, and the store's Prometheus figures.

Wiring (bot side; docs/DASHBOARD.md has the whole of it)::

    from bot import dashboard
    dashboard.add_routes(http_app, settings=settings, engine=b.engine)        # bot/http_side.py
    collector = dashboard.process_store_metrics(b.engine)                     # bot/cogs/periodic.py, then
    await dashboard.sample_round(settings, b.engine, b.queues, agents_seen=b.agents_seen, collector=collector)
    # ... every METRICS_SAMPLE_INTERVAL_S
"""

from bot.dashboard.metrics import StoreCollector, process_store_metrics, register_store_metrics
from bot.dashboard.routes import add_routes
from bot.dashboard.sampler import sample_once, sample_round

__all__ = [
    "StoreCollector",
    "add_routes",
    "process_store_metrics",
    "register_store_metrics",
    "sample_once",
    "sample_round",
]
