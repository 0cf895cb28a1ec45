"""Run the sim alone: `python -m photogen.discord_sim --port 8765` prints its URLs and token, then serves until
Ctrl-C. A demo guild (#studio, an admin role, two members) is created so a bot has somewhere to be."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from photogen.discord_sim.server import DiscordSim

MANAGE_GUILD = 1 << 5


async def serve(host: str, port: int, token: str | None) -> None:
    sim = DiscordSim(host=host, port=port, token=token)
    await sim.start()
    guild = sim.add_guild("Photogen Demo")
    channel = sim.add_channel(guild, "studio")
    admin = sim.add_role(guild, "Photogen Admin", permissions=MANAGE_GUILD)
    sim.add_member(guild, "alice")
    sim.add_member(guild, "ada", roles=[admin])
    print(
        json.dumps(
            {
                "api_base": sim.api_base,
                "gateway_url": sim.gateway_url,
                "token": sim.token,
                "application_id": sim.application_id,
                "guild_id": guild.id,
                "channel_id": channel.id,
            }
        ),
        flush=True,
    )
    print(
        f"DISCORD_API_BASE={sim.api_base}\nDISCORD_GATEWAY_URL={sim.gateway_url}\nDISCORD_TOKEN={sim.token}",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m photogen.discord_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    parser.add_argument("--token", default=None, help="bot token to accept (default: a fresh random one)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.token))


if __name__ == "__main__":
    main()
