"""Posting webhook deliveries (rows storage.webhooks wrote with the order's change): signed with the
endpoint's secret (bot/api/signing.py), retried with doubling waits, every attempt logged on the row.

The retries are scheduled in the order store (``next_attempt_at``), not in a retry decorator: they survive a
restart of the api process, and a slow endpoint never holds up another's deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import aiohttp

from storage import webhooks
from storage.settings import Settings

from .addresses import BlockedAddress, PublicOnlyResolver, literal_host_refusal
from .signing import SIGNATURE_HEADER, signature_header
from .state import ApiState

log = logging.getLogger(__name__)


async def deliver(
    session: aiohttp.ClientSession, settings: Settings, state: ApiState, due: webhooks.DueDelivery
) -> str:
    body = json.dumps(due.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature_header(due.secret, body),
        "Photogen-Delivery": due.id,
        "User-Agent": "Photogen-Webhooks/1",
    }
    started = time.perf_counter()
    status_code: int | None = None
    error: str | None = None
    refusal = None if settings.webhook_allow_private else literal_host_refusal(due.url)
    try:
        if refusal is not None:
            raise BlockedAddress(refusal)
        timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_s)
        async with session.post(
            due.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
        ) as resp:
            status_code = resp.status
            await resp.read()
    except BlockedAddress:
        error = "blocked_address"  # not a public address (bot/api/addresses.py): never connected
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        error = type(
            err
        ).__name__  # never the endpoint's answer or our internals: the class names the failure
    ok = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not ok:
        error = f"HTTP {status_code}"
    return await asyncio.to_thread(
        webhooks.record_attempt,
        state.backends.engine,
        due.id,
        ok=ok,
        status_code=status_code,
        error=error,
        duration_ms=(time.perf_counter() - started) * 1000,
        max_attempts=settings.webhook_max_attempts,
        backoff_s=settings.webhook_retry_base_s,
    )


async def run_deliveries(state: ApiState, stop: asyncio.Event) -> None:
    """Until ``stop``: post the deliveries that are due, each once at a time, polling every WEBHOOK_POLL_S."""
    settings = state.backends.settings
    in_flight: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()

    async def one(session: aiohttp.ClientSession, due: webhooks.DueDelivery) -> None:
        try:
            await deliver(session, settings, state, due)
        except Exception:
            log.exception("webhook delivery %s: attempt not recorded", due.id)
        finally:
            in_flight.discard(due.id)

    connector = (
        None if settings.webhook_allow_private else aiohttp.TCPConnector(resolver=PublicOnlyResolver())
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        while not stop.is_set():
            try:
                due = webhooks.due_deliveries(state.backends.engine, limit=50)
            except Exception:
                log.exception("could not read the webhook deliveries due")
                due = []
            for d in due:
                if d.id not in in_flight:
                    in_flight.add(d.id)
                    task = asyncio.create_task(one(session, d))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.webhook_poll_s)
        if tasks:
            await asyncio.wait(tasks, timeout=settings.webhook_timeout_s)
