"""The dashboard page rendered by a real browser: Debian's headless Chromium against the aiohttp app on 127.0.0.1.

The screenshot is kept as a test artifact (test-artifacts/dashboard.png, git-ignored) for a human to look at; the
test checks it is a non-blank PNG of the window's size, and reads the rendered DOM to check the charts drew data.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image, ImageStat
from sqlalchemy import Engine
from test_dashboard import TOKEN, engine, seed, settings  # noqa: F401 - fixtures shared with the JSON tests

from bot.dashboard import add_routes
from storage.settings import Settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SIZE = (1280, 1600)


async def _chromium(url: str, profile: Path, *mode: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={SIZE[0]},{SIZE[1]}",
        "--hide-scrollbars",
        *mode,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=45)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out


@pytest.mark.timeout(60)
async def test_dashboard_renders_in_headless_chromium(engine: Engine, settings: Settings) -> None:  # noqa: F811
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 - one stat before anything runs
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package")
    seed(engine, settings)
    app = web.Application()
    add_routes(app, settings=settings, engine=engine)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    # The token goes in the address once; the page answers with a cookie and a redirect, as for an admin.
    url = f"http://127.0.0.1:{port}/admin/dashboard?hours=2&token={TOKEN}"  # 2 h: every sample its own point
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = (await _chromium(url, Path(profile), "--dump-dom")).decode()
            await _chromium(url, Path(profile), f"--screenshot={shot}")
    finally:
        await runner.cleanup()

    assert "Photogen — fleet dashboard" in dom
    charts = dict(
        re.findall(r'<svg class="(chart[^"]*)" data-chart="([^"]+)"', dom)[i][::-1] for i in range(6)
    )
    assert charts == {
        name: "chart"
        for name in (
            "queue-depth",
            "jobs-per-hour",
            "time-to-result",
            "failures",
            "fleet-size",
            "cost-per-order",
        )
    }
    queue_points = re.findall(r'data-series="render visible" data-points="(\d+)"', dom)
    assert queue_points == ["5"]
    assert len(re.findall(r'<rect class="bar"', dom)) >= 4
    assert re.search(r'data-series="agents" data-points="5"', dom)

    image = Image.open(shot)
    assert image.format == "PNG" and image.size == SIZE
    stat = ImageStat.Stat(image.convert("L"))
    assert stat.stddev[0] > 10, "the screenshot is blank"
    colors = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 50  # charts and text, not a flat page
