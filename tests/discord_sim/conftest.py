"""Fixtures for the Discord sim's own tests: a started sim with one guild, and real discord.py bots pointed at it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import discord
import discord.gateway
import discord.http
import pytest
import yarl
from discord.ext import commands
from sim_world import World

from photogen.discord_sim import DiscordSim


@pytest.fixture
async def world() -> AsyncIterator[World]:
    sim = await DiscordSim().start()
    guild = sim.add_guild("Photo Club")
    photos = sim.add_channel(guild, "photos")
    admin_role = sim.add_role(guild, "Studio Admin", permissions=1 << 5)  # MANAGE_GUILD
    alice = sim.add_member(guild, "alice")
    bob = sim.add_member(guild, "bob", roles=[admin_role])
    try:
        yield World(sim, guild, photos, admin_role, alice, bob)
    finally:
        await sim.stop()


@pytest.fixture
def discord_py_at_sim(world: World) -> Iterator[None]:
    """Point the real discord.py at the sim: its REST base and its gateway URL are process-wide class attributes."""
    old_base, old_gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = world.sim.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(world.sim.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@pytest.fixture
async def run_bot(
    world: World, discord_py_at_sim: None
) -> AsyncIterator[Callable[[commands.Bot], Awaitable[commands.Bot]]]:
    """Start a bot against the sim and wait until the sim sees it connected; every bot is closed at the end."""
    running: list[tuple[commands.Bot, asyncio.Task[None]]] = []

    async def start(bot: commands.Bot) -> commands.Bot:
        task = asyncio.create_task(bot.start(world.sim.token))
        running.append((bot, task))
        await world.sim.wait_for_bot(timeout=10)
        # The sim has sent READY and GUILD_CREATE; the bot's cache is filled once it has processed them.
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        return bot

    yield start
    for bot, task in running:
        await bot.close()
        # A bot that failed already surfaced its error in the test; here it only has to be gone.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
