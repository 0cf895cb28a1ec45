"""The bot's HTTP side: /healthz, /metrics and /blobs/{key} (signed, expiring links to local blobs).

/metrics is the operators': open only while the side listens on loopback, and otherwise behind the dashboard
token (``Authorization: Bearer DASHBOARD_TOKEN``; off without one). Links to local blobs name the address
members reach: a bot listening on a wildcard address (0.0.0.0, ::) refuses to start without
BLOB_PUBLIC_BASE_URL."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import mimetypes
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from bot import dashboard
from bot.dashboard.auth import operator_auth
from storage.blobs.base import BlobNotFound, BlobStore, InvalidKey, validate_key
from storage.settings import Settings, SettingsError

log = logging.getLogger(__name__)

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def require_link_base(settings: Settings) -> None:
    """Stop start-up with one line when links to local blobs would name an address nobody can open."""
    local_blobs = settings.blob_url.startswith("file://")
    if local_blobs and not settings.blob_public_base_url and settings.bot_http_host.strip() in WILDCARD_HOSTS:
        raise SettingsError(
            f"photogen: bad setting BLOB_PUBLIC_BASE_URL: required when BOT_HTTP_HOST is a wildcard address "
            f"({settings.bot_http_host or 'empty'}): links to results too large to attach must name the "
            "address members reach (e.g. https://photos.example.org)"
        )


def _supervised_children(state_file: str) -> dict[str, dict[str, object]]:
    """What `photogen all` recorded about its children; an unreadable record counts as one child down."""
    try:
        return dict(json.loads(Path(state_file).read_text())["children"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"supervisor": {"up": False}}


class HttpSide:
    """Serves what it is given, nothing of the bot: the settings, the order store (dashboard), the blob store
    (signed links) and ``discord_ready`` (is the gateway session up? for /healthz)."""

    def __init__(
        self, settings: Settings, *, engine: Engine, blobs: BlobStore, discord_ready: Callable[[], bool]
    ) -> None:
        self.settings = settings
        self.blobs = blobs
        self.discord_ready = discord_ready
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/blobs/{key:.+}", self.blob)
        dashboard.add_routes(app, settings=settings, engine=engine)
        self.app = app

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.bot_http_host, self.settings.bot_http_port)
        await site.start()
        # AbstractServer does not declare .sockets; asyncio's and uvloop's servers have it
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.bot_http_port
        log.info("HTTP side on %s:%s", self.settings.bot_http_host, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def healthz(self, request: web.Request) -> web.Response:
        ready = self.discord_ready()
        body: dict[str, object] = {"ok": ready, "discord": ready}
        state_file = self.settings.supervisor_state_file
        if state_file:  # under `photogen all`: unhealthy while the supervisor restarts a child
            children = _supervised_children(state_file)
            body["children"] = children
            body["ok"] = ready = ready and all(c.get("up") for c in children.values())
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        if not is_loopback(self.settings.bot_http_host):
            operator_auth(self.app, self.settings).check(request, sessions=False)
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def blob(self, request: web.Request) -> web.Response:
        from storage.blobs.local import verify_blob_signature

        key = request.match_info["key"]
        try:
            validate_key(key)
        except InvalidKey:
            raise web.HTTPNotFound() from None
        expires = request.query.get("expires", "")
        sig = request.query.get("sig", "")
        if not verify_blob_signature(self.settings, key, expires, sig):
            raise web.HTTPForbidden(text="link expired or not valid")
        try:
            data = await asyncio.to_thread(self.blobs.get, key)
        except BlobNotFound:
            raise web.HTTPNotFound() from None
        ctype = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return web.Response(body=data, content_type=ctype, headers={"Cache-Control": "private, max-age=300"})
