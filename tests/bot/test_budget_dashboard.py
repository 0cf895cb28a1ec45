"""The dashboard shows each server's spend this month against its budget: in the JSON, and on the page as a
real browser draws it (headless Chromium; the screenshot is kept as test-artifacts/budgets.png)."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image, ImageStat
from sqlalchemy import Engine
from test_dashboard import TOKEN, engine, settings  # noqa: F401 - fixtures shared with the dashboard tests
from test_dashboard_browser import ARTIFACTS, SIZE, _chromium

from bot.dashboard import add_routes
from bot.dashboard.data import dashboard_data
from storage import budget as store
from storage import metrics, order_store, transaction
from storage.settings import Settings


def _spend(db: Engine, guild: str, usd: float, gpu_seconds: float, at: float) -> None:
    with transaction(db) as s:
        order = order_store.create_order(s, user_id=5, kind="render", guild_id=guild)
        order_store.mark_delivered(s, order.id)
        metrics.record_job_usage(
            s,
            event_id=f"e{order.id}",
            order_id=order.id,
            job_id="j",
            job_kind="render",
            outcome="done",
            gpu_seconds=gpu_seconds,
            price_per_hour=usd * 3600 / gpu_seconds,
            at=at,
        )


def seed_budgets(db: Engine, now: float) -> None:
    """Server 111: $4.10 of $5.00; 222: 2.5 of 2 GPU-hours (self-hosted, over); 333: spends, no budget;
    444: a budget, nothing spent; last month's spend of 111 does not count."""
    _spend(db, "111", 4.10, 3600, now)
    _spend(db, "111", 9.00, 3600, store.month_start(now) - 3600)
    _spend(db, "222", 0.0001, 9000, now)
    _spend(db, "333", 0.75, 600, now)
    with transaction(db) as s:
        order_store.update_guild_settings(s, "111", budget_limit=5.0, budget_unit="usd")
        order_store.update_guild_settings(s, "222", budget_limit=2.0, budget_unit="gpu_hours")
        order_store.update_guild_settings(s, "444", budget_limit=1.0, budget_unit="usd")


def test_dashboard_json_has_each_servers_spend_against_its_budget(engine: Engine) -> None:  # noqa: F811
    now = time.time()
    seed_budgets(engine, now)
    budgets = dashboard_data(engine, window_s=3600, now=now)["budgets"]
    assert budgets["month"] == store.month_name(now)
    rows = {r["guild_id"]: r for r in budgets["servers"]}
    assert [r["guild_id"] for r in budgets["servers"]] == ["222", "111", "444", "333"]  # the most used first
    assert (rows["111"]["spent"], rows["111"]["limit"], rows["111"]["percent"]) == (
        pytest.approx(4.10),
        5.0,
        82.0,
    )
    assert rows["222"]["unit"] == "gpu_hours" and rows["222"]["percent"] == 125.0
    assert rows["333"]["limit"] is None and rows["333"]["percent"] is None
    assert rows["444"]["spent"] == 0.0 and rows["444"]["percent"] == 0.0


async def test_budgets_drawn_in_headless_chromium(engine: Engine, settings: Settings) -> None:  # noqa: F811
    seed_budgets(engine, time.time())
    app = web.Application()
    add_routes(app, settings=settings, engine=engine)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "budgets.png"
    shot.unlink(missing_ok=True)
    url = f"http://127.0.0.1:{port}/admin/dashboard?hours=2&token={TOKEN}"
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = (await _chromium(url, Path(profile), "--dump-dom")).decode()
            await _chromium(url, Path(profile), f"--screenshot={shot}")
    finally:
        await runner.cleanup()
    rows = re.findall(
        r'<tr class="budget-row"><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>\s*<td>([^<]+)</td>', dom
    )
    assert rows[:2] == [("222", "2.50 GPU-h", "2.00 GPU-h", "125 %"), ("111", "$4.10", "$5.00", "82 %")], rows
    assert ("333", "$0.75", "no budget", "–") in rows
    assert re.search(r'<i class="over" style="width:\s*100(\.0)?%', dom) and 'class="high"' in dom
    image = Image.open(shot)
    assert image.size == SIZE and ImageStat.Stat(image.convert("L")).stddev[0] > 10
