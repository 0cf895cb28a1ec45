"""The bot's test rig: a real PhotogenBot connected over real sockets to photogen.discord_sim, with the embedded
backends (SQLite order store, SQLite queue, local blobs) in a tmp folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stuck_tasks import report_stuck_tasks
from studio import MANAGE_GUILD, Studio, bot_settings

from photogen.discord_sim.server import DiscordSim


@pytest.fixture
async def sim() -> AsyncIterator[DiscordSim]:
    sim = DiscordSim()
    await sim.start()
    # A hang shows which await never returned (pytest-timeout, at 300 s, only sees the loop idle in select).
    with report_stuck_tasks(asyncio.get_running_loop(), after_s=200):
        try:
            yield sim
        finally:
            await sim.stop()


@pytest.fixture
async def studio(sim: DiscordSim, tmp_path: Path) -> AsyncIterator[Studio]:
    guild = sim.add_guild("Photo Club")
    channel = sim.add_channel(guild, "studio")
    admin_role = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    st = Studio(
        sim=sim,
        settings=bot_settings(sim, tmp_path, bot_sync_guild_ids=[guild.id]),
        guild=guild,
        channel=channel,
        admin_role=admin_role,
        alice=sim.add_member(guild, "alice"),
        bob=sim.add_member(guild, "bob"),
        admin=sim.add_member(guild, "ada", roles=[admin_role]),
        tmp=tmp_path,
    )
    await st.start()
    try:
        yield st
    finally:
        if st.bot is not None:
            await st.bot.close()
