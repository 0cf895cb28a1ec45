"""Issue 11, "Trust" — operator data (global cost, dead letters, agent host names) reaches the bot's operators
(BOT_OWNER_IDS) only, never every server's admins; /metrics off loopback needs the token; links to local blobs
need a public base URL when the bot listens on a wildcard address."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import pytest
from pydantic import SecretStr
from studio import Studio, bot_settings, free_port

from bot.app import start_bot
from bot.checks import is_bot_owner
from photogen.discord_sim.server import DiscordSim
from storage.settings import SettingsError, load_settings

TOKEN = "operators-only-token-0123456789abcdef"


async def _status_text(st: Studio, member) -> str:
    inter = await st.sim.invoke_command(st.admin if member is None else member, st.channel, "admin status")
    response = await inter.wait_response()
    assert response.ephemeral
    return response.content + str(response.embeds)


async def test_global_figures_reach_the_bot_owners_only(studio: Studio) -> None:
    st = studio
    st.b.agents_seen["gpu-box-7.internal-4242"] = time.time()
    lease = st.b.queues.train.send("{}") and st.b.queues.train.receive(1, lease_s=60)[0]
    st.b.queues.train.dead_letter(lease, "unknown version")
    assert not is_bot_owner(st.settings, st.admin.id)
    text = await _status_text(st, st.admin)  # this server's admin, not an operator
    assert "waiting" in text
    for secret in ("gpu-box-7", "dead letter", "cost today", "$", "agents active"):
        assert secret not in text.lower(), (secret, text)

    st.settings = st.settings.model_copy(update={"bot_owner_ids": [st.admin.id]})
    await st.restart()
    st.b.agents_seen["gpu-box-7.internal-4242"] = time.time()
    assert is_bot_owner(st.settings, st.admin.id)
    text = await _status_text(st, st.admin)
    assert "gpu-box-7" in text and "1 dead letters" in text and "cost today" in text, text


def test_bot_owner_ids_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_OWNER_IDS", "[123, 456]")
    settings = load_settings()
    assert settings.bot_owner_ids == [123, 456]
    assert is_bot_owner(settings, 456) and not is_bot_owner(settings, 789)
    monkeypatch.delenv("BOT_OWNER_IDS")
    assert load_settings().bot_owner_ids == []


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


async def test_metrics_off_loopback_need_the_token(sim: DiscordSim, tmp_path) -> None:
    guild = sim.add_guild("Club")
    sim.add_channel(guild, "studio")
    port = free_port()
    settings = bot_settings(
        sim,
        tmp_path,
        bot_http_host="0.0.0.0",
        bot_http_port=port,
        blob_public_base_url="https://photos.example.org",
        dashboard_token=TOKEN,
    )
    bot = await start_bot(settings, guild_ready_timeout=0.05)
    try:
        base = f"http://127.0.0.1:{port}"
        assert await asyncio.to_thread(_get, f"{base}/healthz") == 200
        assert await asyncio.to_thread(_get, f"{base}/metrics") == 401
        assert await asyncio.to_thread(_get, f"{base}/metrics", "wrong-token-" * 4) == 401
        assert await asyncio.to_thread(_get, f"{base}/metrics", TOKEN) == 200
        blob_url = bot.backends.blobs.url("users/1/renders/j/0.png", expires_s=120)
        assert blob_url.startswith("https://photos.example.org/blobs/")
    finally:
        await bot.close()
    # Without a token, /metrics off loopback is not served at all.
    off = settings.model_copy(update={"dashboard_token": None})
    bot = await start_bot(off, guild_ready_timeout=0.05)
    try:
        assert await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics") == 404
    finally:
        await bot.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
async def test_a_wildcard_bind_needs_a_public_base_url(sim: DiscordSim, tmp_path, host: str) -> None:
    settings = bot_settings(sim, tmp_path, bot_http_host=host, blob_public_base_url=None)
    with pytest.raises(SettingsError) as err:
        await start_bot(settings, guild_ready_timeout=0.05)
    line = str(err.value)
    assert line.startswith("photogen: bad setting BLOB_PUBLIC_BASE_URL: required when BOT_HTTP_HOST is")
    assert "\n" not in line
    # S3 links are presigned by S3: no base URL needed there.
    assert load_settings(bot_http_host=host, blob_url="s3://bucket").blob_public_base_url is None


def test_a_short_dashboard_token_is_refused_at_settings_load() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(dashboard_token=SecretStr("let-me-in"))
    assert str(err.value).startswith("photogen: bad setting DASHBOARD_TOKEN: at least 32 characters")
    assert "let-me-in" not in str(err.value)
    assert load_settings(dashboard_token=TOKEN).dashboard_token is not None
