"""The bot process: a commands.Bot whose setup_hook opens the backends, loads one cog per feature,
registers the persistent buttons and syncs commands only when they changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import metrics
from bot.backends import Backends, open_backends
from bot.checks import GuildRules
from bot.embeds import clip
from bot.errors import UserFacingError
from bot.gate import GatedTree
from bot.http_side import HttpSide, require_link_base
from bot.ratelimit import RateLimiter
from bot.replies import reply_error
from bot.sync import SyncRecord, sync_if_changed
from storage.settings import Settings

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

EXTENSIONS = (
    "train",
    "imagine",
    "group",
    "tracking",
    "models",
    "privacy",
    "admin",
    "owner",
    "delivery",
    "periodic",
    "edit",
)


def point_discord_at(settings: Settings) -> None:
    """Aim discord.py at settings.discord_api_base / discord_gateway_url (Discord itself by default).

    discord.py keeps both as class attributes (REST: `Route.BASE`; gateway: the websocket's DEFAULT_GATEWAY,
    which an unsharded client connects to first), so this is process-wide: one Discord per process.
    """
    discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def _intents() -> discord.Intents:
    # Slash commands and buttons arrive as interactions; the bot never reads message content or members.
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


class PhotogenBot(commands.Bot):
    def __init__(
        self, settings: Settings, *, backends: Backends | None = None, **client_options: Any
    ) -> None:
        """``client_options`` go to discord.Client (tests pass guild_ready_timeout=0.05: READY is otherwise
        followed by a 2 s wait for more guilds)."""
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=_intents(),
            help_command=None,
            tree_cls=GatedTree,  # every command's access gate and its count (bot/gate.py)
            # Nothing the bot posts may ping anyone: prompts and names are member text.
            allowed_mentions=discord.AllowedMentions.none(),
            owner_ids=set(settings.bot_owner_ids) or None,
            **client_options,
        )
        self.settings = settings
        self._given_backends = backends
        self._backends: Backends | None = backends
        self.http_side: HttpSide | None = None
        self._connect_task: asyncio.Task[None] | None = None  # start_bot's gateway connection
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="photogen-bot")
        # /train photo checks (seconds of CPU each) get their own pool, so other commands never queue behind them.
        self.intake_executor = ThreadPoolExecutor(
            max_workers=settings.intake_workers, thread_name_prefix="intake"
        )
        self.sync_record = SyncRecord(settings.database_path.parent / "command_sync.json")
        self.synced_scopes: list[str] = []
        self.rules_cache: dict[int, tuple[float, GuildRules]] = {}
        self.limiter = RateLimiter(settings.bot_rate_limit_per_minute)

    @property
    def backends(self) -> Backends:
        """The database, queues and blob store (open once setup_hook has run)."""
        if self._backends is None:
            raise RuntimeError("backends are not open yet (setup_hook has not run)")
        return self._backends

    async def run_blocking(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """SQLite, boto3, hashing and photo checks run here, never on the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: func(*args, **kwargs))

    async def run_intake(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """/train's unzipping and photo checks: on the intake pool, never on the one other commands use."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.intake_executor, lambda: func(*args, **kwargs))

    async def setup_hook(self) -> None:
        if self._backends is None:
            self._backends = await self.run_blocking(open_backends, self.settings)
        from bot import views

        self.tree.on_error = self.on_tree_error  # type: ignore[method-assign]
        for name in EXTENSIONS:
            await self.load_extension(f"bot.cogs.{name}")
        self.add_dynamic_items(*views.DYNAMIC_ITEMS)
        self.http_side = HttpSide(
            self.settings,
            engine=self.backends.engine,
            blobs=self.backends.blobs,
            discord_ready=lambda: self.is_ready() and not self.is_closed(),
        )
        await self.http_side.start()
        assert self.application_id is not None
        self.synced_scopes = await sync_if_changed(
            self.tree, self.sync_record, self.application_id, self.settings.bot_sync_guild_ids
        )

    async def force_sync(self) -> list[str]:
        """The owner's /sync: re-sync every scope regardless of the recorded hash."""
        assert self.application_id is not None
        return await sync_if_changed(
            self.tree, self.sync_record, self.application_id, self.settings.bot_sync_guild_ids, force=True
        )

    async def on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(original, UserFacingError):
            metrics.COMMAND_REFUSED.labels(kind=type(original).__name__).inc()
            await reply_error(interaction, original.message)
            return
        if isinstance(error, app_commands.TransformerError):  # a value outside an option's choices
            await reply_error(
                interaction, f"{clip(str(error.value), 40)!r} is not one of the choices offered."
            )
            return
        if isinstance(error, app_commands.CheckFailure):
            await reply_error(interaction, str(error) or "You can't use this command here.")
            return
        metrics.COMMAND_ERRORS.inc()
        log.error("command %s failed", getattr(interaction.command, "qualified_name", "?"), exc_info=original)
        await reply_error(
            interaction, "Something went wrong on our side. Nothing was charged; please try again."
        )

    async def close(self) -> None:
        try:
            if self.http_side is not None:
                await self.http_side.stop()
            await super().close()
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.intake_executor.shutdown(wait=False, cancel_futures=True)
            if self._backends is not None and self._given_backends is None:
                self._backends.close()


def _token(settings: Settings) -> str:
    if settings.discord_token is None or not settings.discord_token.get_secret_value():
        raise SystemExit("photogen: DISCORD_TOKEN is not set")
    return settings.discord_token.get_secret_value()


async def start_bot(
    settings: Settings,
    *,
    backends: Backends | None = None,
    ready_timeout: float = 30.0,
    **client_options: Any,
) -> PhotogenBot:
    """Log in, connect in a background task and return once the bot is ready (tests, the demo).
    Stop it with ``await bot.close()``."""
    point_discord_at(settings)
    require_link_base(settings)
    bot = PhotogenBot(settings, backends=backends, **client_options)
    await bot.login(_token(settings))
    connect = asyncio.create_task(bot.connect(reconnect=True), name="photogen-bot-gateway")
    bot._connect_task = connect
    ready = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({ready, connect}, timeout=ready_timeout, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        await bot.close()
        if connect in done:
            connect.result()  # re-raise the gateway's failure
        raise TimeoutError(f"bot not ready after {ready_timeout}s")
    return bot


def run_bot(settings: Settings) -> None:
    """Blocking entry point of `photogen bot`."""
    point_discord_at(settings)
    require_link_base(settings)
    bot = PhotogenBot(settings)
    # log_handler=None: the CLI configured logging already; discord.py's handler would double every line.
    bot.run(_token(settings), log_handler=None)
