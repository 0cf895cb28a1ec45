"""/forget-me, the HTTP side (health, metrics, signed blob links) and command sync only when changed."""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request

import pytest
from pydantic import SecretStr
from studio import Studio

from storage import order_store, read_session


def _get(url: str, bearer: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


async def test_forget_me_deletes_blobs_and_rows_with_receipt(studio: Studio) -> None:
    st = studio
    st.seed_model(st.alice)
    st.seed_model(st.bob)
    inter = await st.sim.invoke_command(st.alice, st.channel, "imagine", {"prompt": "x", "count": 1})
    await inter.wait_original(lambda m: not m.loading and "queued" in str(m.embeds).lower())
    job = await asyncio.to_thread(st.agent.take_render)
    await asyncio.to_thread(st.agent.finish_render, job)
    await st.sim.wait_for_message(st.channel, lambda m: "pg:up:" in str(m.custom_ids()))
    st.b.blobs.put(f"users/{st.alice.id}/models/m{st.alice.id}/lora.safetensors", b"weights")
    st.b.blobs.put(f"users/{st.bob.id}/models/m{st.bob.id}/lora.safetensors", b"bob's weights")

    inter = await st.sim.invoke_command(st.alice, st.channel, "forget-me")
    ask = await inter.wait_response()
    assert ask.ephemeral and ask.components
    confirm = await inter.wait_original(lambda m: True)
    # Bob cannot confirm Alice's deletion.
    click = await st.sim.click(st.bob, confirm, f"pg:forget:{st.alice.id}")
    assert "only the member who asked" in str((await click.wait_response()).embeds).lower()
    assert list(st.b.blobs.list(f"users/{st.alice.id}/"))

    click = await st.sim.click(st.alice, confirm, f"pg:forget:{st.alice.id}")
    receipt = await click.wait_followup()
    fields = {f["name"]: f["value"] for f in receipt.embeds[0]["fields"]}
    assert fields["files"] == "2" and fields["orders"] == "1" and fields["models"] == "1", fields
    assert list(st.b.blobs.list(f"users/{st.alice.id}/")) == []
    assert list(st.b.blobs.list(f"users/{st.bob.id}/")) == [
        f"users/{st.bob.id}/models/m{st.bob.id}/lora.safetensors"
    ]
    with read_session(st.b.engine) as s:
        assert (
            order_store.get_user(s, st.alice.id) is None and order_store.orders_of_user(s, st.alice.id) == []
        )
        assert order_store.get_user(s, st.bob.id) is not None


async def test_http_side(studio: Studio) -> None:
    st = studio
    base = f"http://127.0.0.1:{st.bot.http_side.port}"  # type: ignore[union-attr]
    status, body = await asyncio.to_thread(_get, f"{base}/healthz")
    assert status == 200 and b'"ok": true' in body
    status, body = await asyncio.to_thread(_get, f"{base}/metrics")
    assert status == 200 and b"photogen_bot_commands_total" in body
    st.b.blobs.put("users/1/renders/j/0.png", b"\x89PNG fake")
    url = st.b.blobs.url("users/1/renders/j/0.png", expires_s=120)
    assert url.startswith(base)
    status, body = await asyncio.to_thread(_get, url)
    assert status == 200 and body == b"\x89PNG fake"
    status, _ = await asyncio.to_thread(_get, url.replace("sig=", "sig=0"))
    assert status == 403
    status, _ = await asyncio.to_thread(_get, f"{base}/blobs/users/1/renders/j/0.png")
    assert status == 403
    status, _ = await asyncio.to_thread(_get, f"{base}/blobs/..%2F..%2Fetc%2Fpasswd?expires=9999999999&sig=x")
    assert status in (403, 404)
    assert st.settings.discord_token.get_secret_value() not in body.decode(errors="replace")
    # The operators' dashboard (bot/dashboard) is served here: off without DASHBOARD_TOKEN, then token-only.
    status, _ = await asyncio.to_thread(_get, f"{base}/admin/dashboard")
    assert status == 404
    st.settings = st.settings.model_copy(
        update={"dashboard_token": SecretStr("let-me-in-0123456789abcdef0123456789")}
    )
    await st.restart()
    status, _ = await asyncio.to_thread(_get, f"{base}/admin/dashboard.json")
    assert status in (401, 403)
    status, body = await asyncio.to_thread(
        _get, f"{base}/admin/dashboard.json", "let-me-in-0123456789abcdef0123456789"
    )
    assert status == 200 and body.startswith(b"{")  # type: ignore[union-attr]


async def test_commands_sync_only_when_changed(studio: Studio) -> None:
    st = studio
    first = st.sim.sync_count
    assert first >= 1 and {"train", "imagine", "admin", "forget-me"} <= set(
        st.sim.synced_command_names(st.channel)
    )
    st.settings = st.settings.model_copy(update={"bot_owner_ids": [st.admin.id]})
    await st.restart()
    assert st.sim.sync_count == first, "an unchanged command set must not be re-synced on start"
    # The owner's /admin sync forces one; a member cannot.
    inter = await st.sim.invoke_command(st.alice, st.channel, "admin sync", check_permissions=False)
    assert "only the bot's owners" in str((await inter.wait_response()).embeds).lower()
    inter = await st.sim.invoke_command(st.admin, st.channel, "admin sync")
    assert (await inter.wait_response()).deferred
    assert "synced" in (await inter.wait_followup()).content.lower()
    assert st.sim.sync_count == first + 1


async def test_token_never_logged(studio: Studio, caplog: pytest.LogCaptureFixture) -> None:
    st = studio
    caplog.set_level(logging.DEBUG)
    await st.restart()
    inter = await st.sim.invoke_command(st.alice, st.channel, "orders")
    await inter.wait_response()
    token = st.settings.discord_token.get_secret_value()  # type: ignore[union-attr]
    assert len(caplog.records) > 10
    assert all(token not in r.getMessage() for r in caplog.records)
