"""How many slash commands per second the Discord sim carries end to end with a trivial real discord.py bot
(INTERACTION_CREATE over the gateway → callback over REST → followup over the webhook), so the bot's own benchmark
(bench/bot.py, goal ≥ 100 commands/s) is not limited by its test server.

    python bench/discord_sim.py [--quick]

Last line: one JSON object with the figures, the goal and goal_met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import time

import _paths  # noqa: F401 - first: takes bench/ off sys.path (see bench/_paths.py)
import discord
import discord.gateway
import discord.http
import yarl
from discord.ext import commands

from photogen.discord_sim import DiscordSim

# 3× the bot's goal (100/s), so the sim takes at most a third of the budget. Judged on CPU time per command, since
# wall time on the shared 2-core machine depends on what the other processes do; wall figures are reported too.
GOAL_COMMANDS_PER_S = 300.0
GOAL_CPU_MS = 1000.0 / GOAL_COMMANDS_PER_S


def trivial_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)

    @bot.tree.command(name="ping", description="Answer at once")
    async def ping(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.defer()
        await interaction.followup.send(f"pong {text}")

    return bot


async def run(total: int, concurrency: int) -> dict[str, object]:
    sim = await DiscordSim(interaction_deadline=None).start()
    guild = sim.add_guild("bench")
    channel = sim.add_channel(guild, "bench")
    member = sim.add_member(guild, "member")
    discord.http.Route.BASE = sim.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sim.gateway_url)
    bot = trivial_bot()
    task = asyncio.create_task(bot.start(sim.token))
    try:
        await sim.wait_for_bot()
        await bot.tree.sync()
        latencies: list[float] = []
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                started = time.perf_counter()
                inter = await sim.invoke_command(member, channel, "ping", {"text": str(i)})
                reply = await inter.wait_followup(timeout=60)
                assert reply.content == f"pong {i}"
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(i) for i in range(20)))  # warm-up
        latencies.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
    latencies.sort()
    rate = total / elapsed
    cpu_ms = cpu * 1000 / total
    return {
        "benchmark": "discord_sim",
        "commands": total,
        "concurrency": concurrency,
        "commands_per_s": round(rate, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "cpu_ms_per_command": round(cpu_ms, 2),
        "cpu_bound_commands_per_s": round(1000 / cpu_ms, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "goal": f"cpu_ms_per_command <= {GOAL_CPU_MS:.2f} (>= {GOAL_COMMANDS_PER_S:.0f} commands/s on one free core; "
        "sim + a trivial discord.py bot in one process)",
        "goal_met": cpu_ms <= GOAL_CPU_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer commands (finishes in seconds)")
    args = parser.parse_args()
    logging.getLogger("discord").setLevel(logging.ERROR)
    total = 500 if args.quick else 3000
    print(json.dumps(asyncio.run(run(total, concurrency=50))))


if __name__ == "__main__":
    main()
