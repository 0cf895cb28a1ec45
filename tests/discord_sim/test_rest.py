"""REST behaviour a bot meets: Discord's limits on messages and command syncs, edits and deletes, the CDN,
unknown routes, and the standalone entry point."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from sim_world import BotFactory, World

from photogen.discord_sim import DiscordSim


def bare_bot() -> commands.Bot:
    return commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)


async def text_channel(bot: commands.Bot, world: World) -> discord.TextChannel:
    channel = bot.get_channel(world.photos.id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def test_discord_limits_are_enforced(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    sim.upload_limit = 1024
    channel = await text_channel(await run_bot(bare_bot()), world)
    with pytest.raises(discord.HTTPException) as too_big:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 2048), filename="big.png"))
    assert too_big.value.status == 413 and too_big.value.code == 40005
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert too_long.value.code == 50035
    with pytest.raises(discord.HTTPException) as empty:
        await channel._state.http.send_message(channel.id, params=discord.http.handle_message_parameters())
    assert empty.value.code == 50006
    with pytest.raises(discord.HTTPException) as bad_nonce:
        await channel.send("x", nonce="n" * 26)
    assert bad_nonce.value.code == 50035
    assert sim.messages(world.photos) == []


async def test_edit_delete_fetch_and_cdn(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    channel = await text_channel(await run_bot(bare_bot()), world)
    sent = await channel.send(
        "v1 @everyone <@42>",
        files=[discord.File(io.BytesIO(b"one"), "a.txt"), discord.File(io.BytesIO(b"two"), "b.txt")],
        allowed_mentions=discord.AllowedMentions(everyone=False, users=False, roles=False),
    )
    record = sim.messages(world.photos)[0]
    assert record.files == {"a.txt": b"one", "b.txt": b"two"} and record.via == "rest"
    assert record.allowed_mentions is not None and record.allowed_mentions["parse"] == []
    assert not record.pings_everyone and record.pinged_user_ids == set()
    loud = await channel.send(
        "@here <@42> <@!43>",
        allowed_mentions=discord.AllowedMentions(everyone=False, users=[discord.Object(43)]),
    )
    loud_record = sim.messages(world.photos)[1]
    assert not loud_record.pings_everyone and loud_record.pinged_user_ids == {43}
    await loud.delete()
    raw = await channel.send("@everyone <@42>")  # no allowed_mentions at all: Discord parses everything
    assert sim.messages(world.photos)[1].pings_everyone and sim.messages(world.photos)[1].pinged_user_ids == {
        42
    }
    await raw.delete()
    assert await sent.attachments[1].read() == b"two"  # served by the sim's CDN route
    edited = await sent.edit(
        content="v2", attachments=[sent.attachments[1], discord.File(io.BytesIO(b"3"), "c.txt")]
    )
    assert [a.filename for a in edited.attachments] == ["b.txt", "c.txt"]
    assert record.content == "v2" and record.files == {"b.txt": b"two", "c.txt": b"3"} and record.edits == 1
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "v2"
    history = [m.content async for m in channel.history(limit=10)]
    assert history == ["v2"]
    await fetched.delete()
    assert sim.messages(world.photos) == [] and sim.messages(world.photos, include_deleted=True)[0].deleted
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(sent.id)
    async with aiohttp.ClientSession() as session:
        wrong_name = sent.attachments[0].url.rsplit("/", 1)[0] + "/other.txt"
        async with session.get(wrong_name) as resp:
            assert resp.status == 404


async def test_guild_sync_validation_and_dm(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    bot = await run_bot(bare_bot())
    guild = discord.Object(world.guild.id)

    @app_commands.command(name="queue", description="Queue position")
    async def queue(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("1st")

    bot.tree.add_command(queue, guild=guild)
    first = await bot.tree.sync(guild=guild)
    again = await bot.tree.sync(guild=guild)
    assert first[0].id == again[0].id  # ids survive a bulk overwrite
    assert sim.sync_log == [(world.guild.id, ["queue"]), (world.guild.id, ["queue"])] and sim.sync_count == 2
    assert sim.global_commands == []
    inter = await sim.invoke_command(world.alice, world.photos, "queue")
    assert (await inter.wait_response()).content == "1st"

    with pytest.raises(discord.HTTPException) as bad:
        await bot.http.bulk_upsert_guild_commands(
            bot.application_id,
            world.guild.id,  # type: ignore[arg-type]
            [{"name": "Queue", "description": "x", "type": 1}],
        )
    assert bad.value.code == 50035 and sim.sync_count == 2

    fetched_guild = await bot.fetch_guild(world.guild.id)
    assert fetched_guild.name == "Photo Club"
    roles = await fetched_guild.fetch_roles()
    assert sorted(r.name for r in roles) == ["@everyone", "Studio Admin"]
    bob = await fetched_guild.fetch_member(world.bob.id)
    assert bob.name == "bob" and [r.id for r in bob.roles if not r.is_default()] == [world.admin_role.id]
    with pytest.raises(discord.NotFound):
        await fetched_guild.fetch_member(12345)

    user = await bot.fetch_user(world.alice.id)
    dm = await user.send("your model is ready")
    dm_channel = sim.dm_channel(world.alice.user)
    assert dm.channel.id == dm_channel.id and sim.messages(dm_channel)[0].content == "your model is ready"


async def test_auth_unknown_routes_and_gateway_bot(world: World) -> None:
    sim = world.sim
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.api_base}/gateway") as resp:
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["url"] == sim.gateway_url
        async with session.get(f"{sim.api_base}/gateway/bot") as resp:
            assert resp.status == 401
        auth = {"Authorization": f"Bot {sim.token}"}
        async with session.get(f"{sim.api_base}/gateway/bot", headers=auth) as resp:
            body = await resp.json()
            assert body["url"] == sim.gateway_url and body["shards"] == 1
        async with session.get(f"{sim.api_base}/stickers/1", headers=auth) as resp:
            assert resp.status == 404
        async with session.post(
            f"{sim.api_base}/channels/{world.photos.id}/messages",
            headers=auth,
            data=b"{not json",
        ) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 50109
    assert sim.unhandled == ["GET /api/v10/stickers/1"]


async def test_standalone_entry_point_prints_urls_and_token() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "photogen.discord_sim",
        "--port",
        "0",
        "--token",
        "demo-token",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert info["token"] == "demo-token" and info["gateway_url"].startswith("ws://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": "Bot demo-token"}
            async with session.get(f"{info['api_base']}/users/@me", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["bot"] is True
            async with session.get(
                f"{info['api_base']}/channels/{info['channel_id']}", headers=headers
            ) as resp:
                assert (await resp.json())["name"] == "studio"
    finally:
        proc.terminate()
        await proc.wait()


async def test_context_manager_frees_the_port() -> None:
    async with DiscordSim() as sim:
        port = sim.port
        assert port > 0
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/api/v10/gateway")


async def test_hostile_filenames_are_cleaned_like_discord(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    channel = await text_channel(await run_bot(bare_bot()), world)
    sent = await channel.send(files=[discord.File(io.BytesIO(b"x"), "../../etc/pass wd?.png")])
    assert [a.filename for a in sent.attachments] == ["pass_wd_.png"]
    assert await sent.attachments[0].read() == b"x"
    assert sim.messages(world.photos)[0].files == {"pass_wd_.png": b"x"}
