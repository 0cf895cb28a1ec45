"""The aiohttp application of `photogen api`: routes from the operation table, JSON errors, the OpenAPI
document, and the webhook delivery loop beside it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bot.backends import Backends, open_backends
from bot.ratelimit import RateLimiter
from storage import api_store
from storage.blobs.local import link_secret
from storage.settings import Settings

from .auth import caller_of
from .errors import HTTP_CODES, ApiError
from .openapi import document
from .routes import OPERATIONS, Operation
from .state import ApiState, Call, json_digest, read_form
from .webhooks import run_deliveries

log = logging.getLogger(__name__)

STATE = web.AppKey("state", ApiState)
_IDEMPOTENCY_KEY_MAX = 200


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = HTTP_CODES.get(err.status, "http_error")
        return ApiError(err.status, code, err.reason or "Refused.").response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return ApiError(
            500, "internal_error", "Something went wrong on our side; try again later."
        ).response()


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= _IDEMPOTENCY_KEY_MAX or not all(0x21 <= ord(c) <= 0x7E for c in key):
        raise ApiError(422, "invalid_request", "`Idempotency-Key` must be 1-200 visible ASCII characters.")
    return key


def _endpoint(op: Operation, state: ApiState) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        b = state.backends
        caller = None
        if op.scope is not None:
            caller = caller_of(
                b.engine, state.limiter, request.headers.get("Authorization"), op.scope, state.keys
            )
        call = Call(request, state, caller)
        digest = ""
        if op.body == "multipart":
            call.form = await read_form(request)
            digest = call.form.digest
        elif op.body is not None:
            call.raw = await request.read()
            digest = json_digest(call.raw)
        key = _idempotency_key(request) if op.idempotent and caller is not None else None
        if key is None or caller is None:
            return _respond(await op.handler(call))
        body_hash = hashlib.sha256(f"{op.op_id}\n{digest}".encode()).hexdigest()
        lock = state.idempotency_locks.setdefault((caller.tenant_id, key), asyncio.Lock())
        async with lock:
            prior = api_store.remembered(b.engine, caller.tenant_id, key)
            if prior is None:
                result = await op.handler(call)
                if isinstance(result, web.StreamResponse) or not 200 <= result[0] < 300:
                    return _respond(result)
                status, model = result
                prior = await asyncio.to_thread(
                    api_store.remember,
                    b.engine,
                    caller.tenant_id,
                    key,
                    body_hash,
                    status,
                    model.model_dump(mode="json"),
                )
                replayed = "false"
            else:
                replayed = "true"
        if not lock.locked():
            state.idempotency_locks.pop((caller.tenant_id, key), None)
        if prior.body_hash != body_hash:
            raise ApiError(
                409, "idempotency_conflict", "This Idempotency-Key was used with another request body."
            )
        return web.json_response(
            prior.response, status=prior.status_code, headers={"Idempotent-Replayed": replayed}
        )

    return handle


def _respond(result: tuple[int, object] | web.StreamResponse) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    status, model = result
    return web.json_response(model.model_dump(mode="json"), status=status)  # type: ignore[attr-defined]


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


def make_app(backends: Backends, base_url: str, *, deliver_webhooks: bool = True) -> web.Application:
    s = backends.settings
    state = ApiState(
        backends=backends,
        limiter=RateLimiter(s.api_rate_limit_per_minute),
        link_secret=link_secret(s),
        base_url=base_url,
    )
    # A training's photos (zips included) plus the form's few fields.
    app = web.Application(middlewares=[json_errors], client_max_size=s.intake_max_total_bytes + 1024 * 1024)
    app[STATE] = state
    for op in OPERATIONS:
        app.router.add_route(op.method, op.route or op.path, _endpoint(op, state))
    app.router.add_get("/v1/openapi.json", openapi_json)

    async def deliveries(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_deliveries(state, stop))
        yield
        stop.set()
        await task

    if deliver_webhooks:
        app.cleanup_ctx.append(deliveries)
    return app


async def start_api(
    backends: Backends, host: str, port: int, *, deliver_webhooks: bool = True
) -> tuple[web.AppRunner, str]:
    """Serve in this event loop; returns the runner (``await runner.cleanup()`` stops it) and the base URL."""
    app = make_app(backends, "", deliver_webhooks=deliver_webhooks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    base = backends.settings.api_public_base_url or f"http://{host}:{bound}"
    app[STATE].base_url = base.rstrip("/")
    return runner, app[STATE].base_url


def run_api(settings: Settings) -> int:
    """`photogen api`: until SIGINT/SIGTERM."""

    async def main() -> None:
        backends = await asyncio.to_thread(open_backends, settings)
        runner, base = await start_api(backends, settings.api_host, settings.api_port)
        log.info("Photogen API on %s (OpenAPI: %s/v1/openapi.json)", base, base)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            backends.close()

    asyncio.run(main())
    return 0
