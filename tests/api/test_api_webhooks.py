"""Webhooks: a delivery row written with the order's change, posted signed (HMAC-SHA256 over timestamp and
body), retried with doubling waits, every attempt in the tenant's delivery log; verify's replay window."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import select

from bot.api.signing import SIGNATURE_HEADER, SignatureError, signature_header, verify
from storage import lifecycle, read_session, webhooks
from storage.models import Delivery
from tests.api.rig import Api, agent_finishes, ready_model, serve

RENDER = {"prompt": "a portrait of {subject}", "count": 1, "seed": 1}


def test_verify_accepts_the_signature_and_refuses_a_changed_byte_another_secret_or_an_old_delivery() -> None:
    body = b'{"type":"order.done","data":{"order_id":"abc"}}'
    header = signature_header("whsec_1", body, timestamp=1_000_000)
    assert header.startswith("t=1000000,v1=")
    assert verify("whsec_1", header, body, now=1_000_000 + 299) == 1_000_000
    for secret, text, now, why in (
        ("whsec_1", body.replace(b"abc", b"abd"), 1_000_000, "does not match"),
        ("whsec_2", body, 1_000_000, "does not match"),
        ("whsec_1", body, 1_000_000 + 301, "replay window"),  # a captured delivery replayed later
        ("whsec_1", body, 1_000_000 - 301, "replay window"),
    ):
        with pytest.raises(SignatureError, match=why):
            verify(secret, header, text, now=now)
    with pytest.raises(SignatureError, match="malformed"):
        verify("whsec_1", "v1=00", body, now=1_000_000)
    forged_time = header.replace("t=1000000", "t=1000290")  # moving the timestamp breaks the MAC
    with pytest.raises(SignatureError, match="does not match"):
        verify("whsec_1", forged_time, body, now=1_000_290)


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes, float]] = field(default_factory=list)
    fail_first: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver("")

    async def handle(request: web.Request) -> web.Response:
        hook.received.append((dict(request.headers), await request.read(), time.time()))
        if len(hook.received) <= hook.fail_first:
            return web.Response(status=503)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield hook
    await runner.cleanup()


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_order_events_are_delivered_signed_and_logged(api: Api, receiver: Receiver) -> None:
    _, model_id = ready_model(api.b, "acme")  # before the endpoint: its events are not announced
    key = api.key("acme")
    status, hook, _ = await api.call("POST", "/v1/webhooks", key, json={"url": receiver.url})
    assert (
        status == 201
        and hook["secret"].startswith("whsec_")
        and "secret" not in str((await api.call("GET", "/v1/webhooks", key))[1])
    )
    _, placed, _ = await api.call("POST", "/v1/renders", key, json={**RENDER, "model_id": model_id})
    order_id = placed["order_id"]
    agent_finishes(api.b, order_id)
    await _until(lambda: len(receiver.received) == 3)
    types = []
    for headers, body, _ in receiver.received:
        verify(hook["secret"], headers[SIGNATURE_HEADER], body)
        event = json.loads(body)
        assert event["data"]["order_id"] == order_id and headers["Photogen-Delivery"] == event["id"]
        types.append(event["type"])
    assert sorted(types) == ["order.done", "order.queued", "order.started"]
    # Never posted to Discord: an API order has no channel.
    with read_session(api.b.engine) as s:
        assert s.exec(select(Delivery).where(Delivery.order_id == order_id)).all() == []
    # The receiver has the posts; each attempt is written once its answer is read: wait for the log to say so.
    await _until(lambda: all(d.status == "delivered" for d in webhooks.list_deliveries(api.b.engine, "acme")))
    status, log, _ = await api.call("GET", f"/v1/webhooks/deliveries?order_id={order_id}", key)
    assert status == 200 and {d["event"] for d in log["deliveries"]} == set(types)
    assert all(d["status"] == "delivered" and len(d["attempts"]) == 1 for d in log["deliveries"])
    assert all(d["attempts"][0]["status_code"] == 204 for d in log["deliveries"])


async def test_a_failing_endpoint_is_retried_with_growing_waits_and_every_attempt_logged(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    async with serve(tmp_path, webhook_retry_base_s=0.3) as api:
        _, model_id = ready_model(api.b, "acme")
        key = api.key("acme")
        await api.call("POST", "/v1/webhooks", key, json={"url": receiver.url, "events": ["order.failed"]})
        _, placed, _ = await api.call("POST", "/v1/renders", key, json={**RENDER, "model_id": model_id})
        agent_finishes(api.b, placed["order_id"], fail=True)
        await _until(lambda: len(receiver.received) == 3)
        at = [t for _, _, t in receiver.received]
        assert at[1] - at[0] >= 0.25 and at[2] - at[1] >= 0.55  # 0.3 s, then 0.6 s
        bodies = {b for _, b, _ in receiver.received}
        assert len(bodies) == 1 and json.loads(bodies.pop())["data"]["error"]["code"] == "oom"
        await _until(lambda: webhooks.list_deliveries(api.b.engine, "acme")[0].status == "delivered")
        [d] = webhooks.list_deliveries(api.b.engine, "acme")
        assert [a["status_code"] for a in d.attempt_log] == [503, 503, 204]
        assert [a["error"] for a in d.attempt_log] == ["HTTP 503", "HTTP 503", None]


async def test_a_delivery_that_never_succeeds_is_marked_failed_after_the_last_attempt(tmp_path: Path) -> None:
    async with serve(tmp_path, webhook_max_attempts=2, webhook_retry_base_s=0.1) as api:
        _, model_id = ready_model(api.b, "acme")
        key = api.key("acme")
        # Port 9 (discard) on loopback refuses connections: every attempt fails without an answer.
        await api.call(
            "POST", "/v1/webhooks", key, json={"url": "http://127.0.0.1:9/x", "events": ["order.queued"]}
        )
        await api.call("POST", "/v1/renders", key, json={**RENDER, "model_id": model_id})
        await _until(lambda: webhooks.list_deliveries(api.b.engine, "acme")[0].status == "failed")
        status, log, _ = await api.call("GET", "/v1/webhooks/deliveries", key)
        [d] = log["deliveries"]
        assert status == 200 and d["status"] == "failed" and len(d["attempts"]) == 2
        assert d["attempts"][0]["error"] == "ClientConnectorError" and d["attempts"][0]["status_code"] is None


def test_the_delivery_row_is_written_in_the_transaction_that_applies_the_event(tmp_path: Path) -> None:
    """No api process running: the row exists as soon as apply_event returns, and once per event id."""
    from bot.backends import open_backends
    from cloud.messages import Event
    from storage.contracts import EventKind, JobKind
    from tests.api.rig import api_settings

    b = open_backends(api_settings(tmp_path))
    try:
        _, model_id = ready_model(b, "acme")
        webhooks.add_endpoint(b.engine, "acme", "http://127.0.0.1:9/x", ["order.started"])
        from bot.api.schemas import RenderRequest
        from bot.api.service import place_render

        placed = place_render(b, "acme", RenderRequest(model_id=model_id, prompt="p"))
        job_id = lifecycle.job_id_of(b.engine, placed.order_id)
        assert job_id is not None
        started = Event(
            kind=EventKind.STARTED, job_id=job_id, order_id=placed.order_id, job_kind=JobKind.RENDER
        )
        for _ in range(2):  # a redelivered event is applied once, announced once
            lifecycle.apply_event(b.engine, started, price_per_hour=0.0, advice_after=3)
        [d] = webhooks.list_deliveries(b.engine, "acme")
        assert (d.event, d.status, d.attempts) == ("order.started", "pending", 0)
        assert webhooks.list_deliveries(b.engine, "other") == []
    finally:
        b.close()


def test_a_stuck_api_order_failed_by_the_reconciler_is_announced_not_posted(tmp_path: Path) -> None:
    from bot.api.schemas import RenderRequest
    from bot.api.service import place_render
    from bot.backends import open_backends
    from tests.api.rig import api_settings

    b = open_backends(api_settings(tmp_path))
    try:
        _, model_id = ready_model(b, "acme")
        webhooks.add_endpoint(b.engine, "acme", "http://127.0.0.1:9/x", ["order.failed"])
        placed = place_render(b, "acme", RenderRequest(model_id=model_id, prompt="p"))
        assert lifecycle.fail_stuck_order(
            b.engine, placed.order_id, time.time() + 1, "lost", "The job was lost."
        )
        with read_session(b.engine) as s:
            assert s.exec(select(Delivery).where(Delivery.order_id == placed.order_id)).all() == []
        [d] = webhooks.list_deliveries(b.engine, "acme")
        assert d.event == "order.failed" and d.order_id == placed.order_id
    finally:
        b.close()
