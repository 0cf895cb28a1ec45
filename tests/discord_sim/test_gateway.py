"""The gateway as discord.py sees it: READY + GUILD_CREATE fill its cache, member chunking, message events,
and a dropped socket that RESUMEs without losing the events sent meanwhile."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import discord
import pytest
from discord.ext import commands
from sim_world import BotFactory, World


def plain_bot(intents: discord.Intents) -> commands.Bot:
    return commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)


async def test_ready_and_guild_create_fill_the_cache(world: World, run_bot: BotFactory) -> None:
    intents = discord.Intents.default()
    intents.members = True
    bot = await run_bot(plain_bot(intents))
    assert bot.user is not None and bot.user.id == world.sim.application_id and bot.user.bot
    assert bot.application_id == world.sim.application_id
    assert bot.owner_id is None and (await bot.application_info()).owner.id == world.sim.owner.id
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Photo Club"
    assert [c.name for c in guild.text_channels] == ["photos"]
    assert [r.name for r in guild.roles] == ["@everyone", "Studio Admin"]
    bob = guild.get_member(world.bob.id)
    assert bob is not None and [r.name for r in bob.roles[1:]] == ["Studio Admin"]
    assert (
        bob.guild_permissions.manage_guild
        and not guild.get_member(world.alice.id).guild_permissions.manage_guild
    )  # type: ignore[union-attr]

    # Things added while the bot is online reach it as events.
    extra = world.sim.add_channel(world.guild, "results")
    role = world.sim.add_role(world.guild, "Regular")
    world.sim.set_roles(world.alice, [role])
    await world.sim.wait_until(
        lambda: (
            [r.name for r in guild.get_member(world.alice.id).roles]  # type: ignore[union-attr]
            == ["@everyone", "Regular"]
        ),
        5,
    )
    assert guild.get_channel(extra.id).name == "results"  # type: ignore[union-attr]


async def test_without_the_members_intent_only_the_bot_is_sent(world: World, run_bot: BotFactory) -> None:
    bot = await run_bot(plain_bot(discord.Intents.default()))
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and [m.name for m in guild.members] == ["Photogen"]
    carol = world.sim.add_member(world.guild, "carol")
    await world.sim.flush_events()
    assert guild.get_member(carol.id) is None  # GUILD_MEMBER_ADD needs the members intent, as on Discord


async def test_member_chunking_with_the_members_intent(world: World, run_bot: BotFactory) -> None:
    intents = discord.Intents.default()
    intents.members = True
    bot = await run_bot(plain_bot(intents))
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.chunked
    assert sorted(m.name for m in guild.members) == ["Photogen", "alice", "bob", "owner"]
    carol = world.sim.add_member(world.guild, "carol")
    await world.sim.wait_until(lambda: guild.get_member(carol.id) is not None, 5)


async def test_member_messages_reach_on_message(world: World, run_bot: BotFactory) -> None:
    intents = discord.Intents.default()
    intents.message_content = True
    bot = plain_bot(intents)
    seen: list[tuple[str, str]] = []

    @bot.event
    async def on_message(message: discord.Message) -> None:
        seen.append((message.author.name, message.content))

    await run_bot(bot)
    await world.sim.post_message(world.alice, world.photos, "hello bot", files=[("a.txt", b"hi")])
    await world.sim.wait_until(lambda: bool(seen), 5)
    assert seen == [("alice", "hello bot")]
    assert world.sim.messages(world.photos)[0].files == {"a.txt": b"hi"}


async def test_dropped_socket_resumes_and_replays_missed_events(world: World, run_bot: BotFactory) -> None:
    sim = world.sim
    bot = await run_bot(plain_bot(discord.Intents.default()))
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)
    await sim.drop_gateway()
    late = sim.add_channel(world.guild, "made-while-away")  # dispatched while no socket is open: buffered
    await asyncio.wait_for(resumed.wait(), 10)
    guild = bot.get_guild(world.guild.id)
    assert guild is not None
    await sim.wait_until(lambda: guild.get_channel(late.id) is not None, 5)
    assert sim.gateway.identify_count == 1 and sim.gateway.resume_count == 1


async def test_gateway_protocol_by_hand(world: World) -> None:
    """Heartbeat ACK, an unknown session invalidated, a wrong token closed with 4004, READY and GUILD_CREATE
    framing, a second IDENTIFY closed with 4005, an unidentified request closed with 4003."""
    sim = world.sim
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(sim.gateway_url + "?v=10&encoding=json") as ws:
            hello = json.loads((await ws.receive()).data)
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
            await ws.send_str(json.dumps({"op": 1, "d": None}))
            assert json.loads((await ws.receive()).data) == {"op": 11}
            await ws.send_str(
                json.dumps({"op": 6, "d": {"token": sim.token, "session_id": "nope", "seq": 3}})
            )
            assert json.loads((await ws.receive()).data) == {"op": 9, "d": False}
            await ws.send_str(json.dumps({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}}))
            closed = await ws.receive()
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4004
        async with session.ws_connect(sim.gateway_url) as ws:
            await ws.receive()
            identify = {"op": 2, "d": {"token": sim.token, "intents": 0, "properties": {}}}
            await ws.send_str(json.dumps(identify))
            ready = json.loads((await ws.receive()).data)
            assert ready["t"] == "READY" and ready["s"] == 1
            assert ready["d"]["guilds"] == [{"id": str(world.guild.id), "unavailable": True}]
            guild_create = json.loads((await ws.receive()).data)
            assert guild_create["t"] == "GUILD_CREATE" and guild_create["s"] == 2
            assert [m["user"]["username"] for m in guild_create["d"]["members"]] == [
                "Photogen"
            ]  # no members intent
            await ws.send_str(json.dumps(identify))
            closed = await ws.receive()
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4005
        async with session.ws_connect(sim.gateway_url) as ws:
            await ws.receive()
            await ws.send_str(json.dumps({"op": 8, "d": {"guild_id": str(world.guild.id)}}))
            closed = await ws.receive()
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4003  # not identified yet
    assert not sim.bot_connected


async def test_a_healthy_connection_reports_its_round_trip_not_the_heartbeat_interval(
    world: World, run_bot: BotFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """discord.py notes a heartbeat's send time in its keep-alive thread after the send completes; an ACK that
    arrived before that (an instant one from a gateway in the same process) measured the whole interval as
    latency and logged "Can't keep up, websocket is 41.3s behind" in every demo."""
    world.sim.heartbeat_interval_ms = 300
    bot = await run_bot(plain_bot(discord.Intents.default()))
    heartbeats = world.sim.gateway.heartbeats
    latencies = []
    while len(latencies) < 4:
        await world.sim.wait_until(lambda seen=heartbeats: world.sim.gateway.heartbeats > seen, 5)
        heartbeats = world.sim.gateway.heartbeats
        await asyncio.sleep(0.15)  # the ACK (20 ms) has come back
        latencies.append(bot.latency)
    assert max(latencies) < 0.15, latencies  # the round trip, not the 0.3 s interval
    assert "behind" not in caplog.text
