"""The Discord bot: slash commands, photo intake, orders, live progress, delivery, moderation.

Public pieces:
    run_bot(settings)            blocking entry point of `photogen bot`
    await start_bot(settings)    connect in-process and return the ready PhotogenBot (tests, the demo)
    PhotogenBot                  the commands.Bot subclass (bot/app.py)
    point_discord_at(settings)   aim discord.py at DISCORD_API_BASE / DISCORD_GATEWAY_URL
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.app import PhotogenBot, point_discord_at, run_bot, start_bot

__all__ = ["PhotogenBot", "point_discord_at", "run_bot", "start_bot"]


def __getattr__(name: str) -> Any:
    # discord.py is imported on first use, so `import bot.checks` in a test stays cheap.
    if name in __all__:
        from bot import app

        return getattr(app, name)
    raise AttributeError(name)
