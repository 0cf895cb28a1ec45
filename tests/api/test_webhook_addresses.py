"""A tenant's webhook can never make the api process call into the operator's network (SSRF): loopback,
private, link-local (the EC2 metadata address) and other non-public addresses are refused when the webhook is
created and again at every delivery (a literal address, or a name resolving there); WEBHOOK_ALLOW_PRIVATE lifts
it for tests and closed networks (the other API tests' receivers listen on 127.0.0.1 with it on)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from bot.api.addresses import BlockedAddress, PublicOnlyResolver, is_public, literal_host_refusal
from storage import webhooks
from tests.api.rig import ready_model, serve


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # the EC2 metadata address
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("fd00::1", False),
        ("224.0.0.1", False),
        ("not-an-address", False),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
    ],
)
def test_only_public_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_literal_hosts_and_schemes_are_judged_without_dns() -> None:
    assert literal_host_refusal("https://hooks.example.com/photogen") is None
    assert literal_host_refusal("https://8.8.8.8/x") is None
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "http://localhost/x",
        "http://api.localhost/x",
        "ftp://8.8.8.8/x",
        "http:///no-host",
    ):
        assert literal_host_refusal(url) is not None, url


async def test_a_name_resolving_to_loopback_is_refused_at_the_connection() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(BlockedAddress):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


async def test_private_webhooks_are_refused_at_creation_and_never_posted(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with serve(tmp_path, webhook_allow_private=False) as api:
            _, model_id = ready_model(api.b, "acme")
            key = api.key("acme")
            for bad in (url, "http://169.254.169.254/latest/meta-data/", "http://localhost:9/x"):
                status, body, _ = await api.call("POST", "/v1/webhooks", key, json={"url": bad})
                assert status == 422 and body["error"]["code"] == "webhook_url_refused", (bad, body)
                assert "127.0.0.1" not in body["error"]["message"]  # the reason, not an echo of our network
            assert webhooks.list_endpoints(api.b.engine, "acme") == []
            # One that got in anyway (stored before the rule, or by hand): its deliveries never connect.
            webhooks.add_endpoint(api.b.engine, "acme", url, ["order.queued"])
            await api.call(
                "POST", "/v1/renders", key, json={"prompt": "a portrait", "model_id": model_id, "count": 1}
            )
            deadline = time.monotonic() + 10
            while not any(d.attempt_log for d in webhooks.list_deliveries(api.b.engine, "acme")):
                assert time.monotonic() < deadline, "no attempt recorded"
                await asyncio.sleep(0.05)
            [d] = webhooks.list_deliveries(api.b.engine, "acme")
            assert d.attempt_log[0]["error"] == "blocked_address" and d.attempt_log[0]["status_code"] is None
            assert received == []
    finally:
        await runner.cleanup()
