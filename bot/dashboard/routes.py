"""GET /admin/dashboard (HTML with SVG charts) and GET /admin/dashboard.json, token-protected."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from bot.dashboard import auth
from bot.dashboard.data import dashboard_data
from bot.dashboard.page import render_page
from storage.settings import Settings

_NO_STORE = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# The page has no script and loads nothing: a strict policy costs nothing and blocks injected content.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"


def add_routes(
    app: web.Application, *, settings: Settings, engine: Engine, queues: Any = None, blobs: Any = None
) -> None:
    """Serve the admin dashboard on ``app``. ``queues``/``blobs`` are accepted for the wiring's symmetry; the
    figures come from the order store, where the sampler (run_sampler) keeps queue depth and fleet size."""
    guard = auth.operator_auth(app, settings)

    async def _data(request: web.Request) -> dict[str, Any]:
        guard.check(request)
        try:
            window_h = float(request.query.get("hours", settings.dashboard_window_h))
        except ValueError:
            raise web.HTTPBadRequest(text="hours must be a number") from None
        if not 0 < window_h <= 24 * 90:
            raise web.HTTPBadRequest(text="hours must be in (0, 2160]")
        return await asyncio.to_thread(dashboard_data, engine, window_s=window_h * 3600)

    async def page(request: web.Request) -> web.Response:
        html = render_page(await _data(request))
        return web.Response(
            text=html, content_type="text/html", headers={**_NO_STORE, "Content-Security-Policy": _CSP}
        )

    async def as_json(request: web.Request) -> web.Response:
        return web.json_response(await _data(request), headers=_NO_STORE)

    app.router.add_get("/admin/dashboard", page)
    app.router.add_get("/admin/dashboard.json", as_json)
