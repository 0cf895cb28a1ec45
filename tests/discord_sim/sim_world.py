"""The small guild every sim test starts from (shared by conftest.py and the tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from discord.ext import commands

from photogen.discord_sim import DiscordSim, SimChannel, SimGuild, SimMember, SimRole

BotFactory = Callable[[commands.Bot], Awaitable[commands.Bot]]


@dataclass
class World:
    sim: DiscordSim
    guild: SimGuild
    photos: SimChannel
    admin_role: SimRole
    alice: SimMember
    bob: SimMember
