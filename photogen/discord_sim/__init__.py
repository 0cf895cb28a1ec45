"""A small Discord-compatible server for tests and the offline demo.

The real discord.py client connects to it over real sockets (REST under /api/v10 and the gateway websocket);
tests drive members through :class:`DiscordSim`. How to point a bot at it: docs/DISCORD_SIM.md.
"""

from photogen.discord_sim.interactions import SimError, SimInteraction, SimResponse, SimTimeout
from photogen.discord_sim.models import (
    ADMINISTRATOR,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMember,
    SimMessage,
    SimRole,
    SimUser,
)
from photogen.discord_sim.ratelimits import RateBucket, RateLimitRule
from photogen.discord_sim.server import DiscordSim

__all__ = [
    "ADMINISTRATOR",
    "DiscordSim",
    "RateBucket",
    "RateLimitRule",
    "SimAttachment",
    "SimChannel",
    "SimError",
    "SimGuild",
    "SimInteraction",
    "SimMember",
    "SimMessage",
    "SimResponse",
    "SimRole",
    "SimTimeout",
    "SimUser",
]
