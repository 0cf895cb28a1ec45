"""DiscordSim: a small Discord-compatible server (REST under /api/v10 + the gateway websocket) on 127.0.0.1.

The real discord.py client connects to it over real sockets. Tests and the offline demo drive it through the
Python API below: build a guild, invoke slash commands as a member, click buttons, read every message posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from photogen.discord_sim.bodies import MessageBody, UploadedFile
from photogen.discord_sim.gateway import Gateway
from photogen.discord_sim.interactions import SimError, SimInteraction, SimResponse, SimTimeout
from photogen.discord_sim.models import (
    DEFAULT_EVERYONE_PERMISSIONS,
    SimChannel,
    SimGuild,
    SimMember,
    SimMessage,
    SimRole,
    SimUser,
    new_snowflake,
)
from photogen.discord_sim.ratelimits import RateBucket, RateLimitRule, route_regex
from photogen.discord_sim.store import MessageStore

INTENT_GUILD_MEMBERS = 1 << 1
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024

# Application command option types (Discord's numbers).
FileSpec = tuple[str, bytes]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int
    at: float


class DiscordSim(MessageStore):
    """A Discord-compatible server for tests and the offline demo.

    `token` and `application_id` are what the bot is configured with; `api_base` and `gateway_url` are where
    discord.py must be pointed (see docs/DISCORD_SIM.md)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        application_id: int | None = None,
        bot_name: str = "Photogen",
        owner_name: str = "owner",
        host: str = "127.0.0.1",
        port: int = 0,
        interaction_deadline: float | None = 3.0,
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        nonce_window_s: float = 300.0,
        heartbeat_interval_ms: int = 41_250,
        heartbeat_ack_delay_s: float = 0.02,
        require_synced_commands: bool = True,
        interaction_token_ttl: float | None = 15 * 60,
        request_log_size: int = 100_000,
    ) -> None:
        self.token = token or f"sim.{secrets.token_urlsafe(24)}"
        self.application_id = application_id or new_snowflake()
        self.bot_user = SimUser(self.application_id, bot_name, bot=True)
        self.owner = SimUser(new_snowflake(), owner_name)
        self.host, self._port = host, port
        self.interaction_deadline = interaction_deadline
        self.upload_limit = upload_limit
        self.nonce_window_s = nonce_window_s
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.heartbeat_ack_delay_s = heartbeat_ack_delay_s
        self.require_synced_commands = require_synced_commands
        self.interaction_token_ttl = interaction_token_ttl

        self._init_store()
        self.users: dict[int, SimUser] = {self.bot_user.id: self.bot_user, self.owner.id: self.owner}
        self.guilds: dict[int, SimGuild] = {}
        self.channels: dict[int, SimChannel] = {}
        self.interactions: dict[int, SimInteraction] = {}
        self._by_token: dict[str, SimInteraction] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.sync_count = 0  # bulk overwrites (PUT), global and guild together
        # (guild id or None, command names) per bulk overwrite
        self.sync_log: list[tuple[int | None, list[str]]] = []
        self.rate_limits: list[RateLimitRule] = []
        self.buckets: list[RateBucket] = []
        self.requests: deque[RequestRecord] = deque(maxlen=request_log_size)  # newest kept in long demo runs
        self.unhandled: list[str] = []  # "METHOD /path" the sim has no route for
        self.late_callbacks = 0  # callbacks refused because the interaction deadline had passed

        self.gateway = Gateway(self)
        self._changed = asyncio.Event()
        self._events: asyncio.Queue[tuple[str, dict[str, Any], int | None]] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        from photogen.discord_sim.rest import build_app  # the REST module needs the finished class

        self._changed = asyncio.Event()
        self._events = asyncio.Queue()
        self._pump = asyncio.create_task(self._pump_events(), name="discord-sim-dispatch")
        self._runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            for session in self.gateway.live_sessions():
                assert session.ws is not None
                await session.ws.close(code=1001, message=b"sim stopping")
            await self._runner.cleanup()
            self._runner = None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_base(self) -> str:
        """What discord.py's `discord.http.Route.BASE` must be set to."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What discord.py's `DiscordWebSocket.DEFAULT_GATEWAY` must be set to (also returned by GET /gateway/bot)."""
        return f"ws://{self.host}:{self._port}/gateway"

    # ------------------------------------------------------------------ waiting

    def notify(self) -> None:
        """Wake every waiter; called after each change to the sim's state."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, ready: Callable[[], bool], timeout: float, *, poll: float = 0.05) -> None:
        """Until ready() holds. It is re-checked on every change to the sim and every `poll` seconds, so it may
        also look at state outside the sim (the bot's database, a queue)."""
        deadline = time.monotonic() + timeout
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise SimTimeout(f"condition not met within {timeout:.1f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, poll))

    async def wait_for_bot(self, timeout: float = 10.0) -> None:
        """Until a bot has identified on the gateway and received its guilds."""
        try:
            await self.wait_until(lambda: bool(self.gateway.live_sessions()), timeout)
        except SimTimeout:
            raise SimTimeout(f"no bot connected to the gateway within {timeout:.1f} s") from None

    @property
    def bot_connected(self) -> bool:
        return bool(self.gateway.live_sessions())

    async def drop_gateway(self) -> None:
        """Close the bot's socket uncleanly; discord.py reconnects and RESUMEs, missing nothing."""
        await self.gateway.drop()

    # ------------------------------------------------------------------ world building

    def add_guild(self, name: str, *, owner: SimUser | None = None) -> SimGuild:
        owner = owner or self.owner
        guild = SimGuild(id=new_snowflake(), name=name, owner_id=owner.id)
        guild.roles.append(SimRole(guild.id, guild.id, "@everyone", DEFAULT_EVERYONE_PERMISSIONS, 0))
        self.guilds[guild.id] = guild
        guild.members[owner.id] = SimMember(owner, guild)
        guild.members[self.bot_user.id] = SimMember(self.bot_user, guild)
        self._emit("GUILD_CREATE", guild.payload())
        return guild

    def add_role(self, guild: SimGuild, name: str, *, permissions: int = 0) -> SimRole:
        role = SimRole(new_snowflake(), guild.id, name, permissions, len(guild.roles))
        guild.roles.append(role)
        self._emit("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.payload()})
        return role

    def add_channel(self, guild: SimGuild, name: str, *, nsfw: bool = False) -> SimChannel:
        """A text channel; ``nsfw`` makes it age-restricted, as Discord's channel setting does."""
        channel = SimChannel(new_snowflake(), name, guild.id, position=len(guild.channels), nsfw=nsfw)
        guild.channels.append(channel)
        self.channels[channel.id] = channel
        self._channel_messages[channel.id] = []
        self._emit("CHANNEL_CREATE", channel.payload())
        return channel

    def set_channel_nsfw(self, channel: SimChannel, nsfw: bool) -> None:
        """Turn a channel's age restriction on or off (CHANNEL_UPDATE to the bot)."""
        channel.nsfw = nsfw
        self._emit("CHANNEL_UPDATE", channel.payload())

    def add_member(
        self, guild: SimGuild, user: str | SimUser, *, roles: Iterable[SimRole | str] = ()
    ) -> SimMember:
        if isinstance(user, str):
            user = SimUser(new_snowflake(), user)
        self.users[user.id] = user
        member = SimMember(user, guild, [self._role(guild, r) for r in roles])
        guild.members[user.id] = member
        self._emit("GUILD_MEMBER_ADD", member.payload() | {"guild_id": str(guild.id)}, INTENT_GUILD_MEMBERS)
        return member

    def set_roles(self, member: SimMember, roles: Iterable[SimRole | str]) -> None:
        member.roles = [self._role(member.guild, r) for r in roles]
        self._emit(
            "GUILD_MEMBER_UPDATE", member.payload() | {"guild_id": str(member.guild.id)}, INTENT_GUILD_MEMBERS
        )

    def member(self, guild: SimGuild, user_id: int) -> SimMember:
        return guild.members[user_id]

    def bot_guilds(self) -> list[SimGuild]:
        return [g for g in self.guilds.values() if self.bot_user.id in g.members]

    @staticmethod
    def _role(guild: SimGuild, role: SimRole | str) -> SimRole:
        if isinstance(role, SimRole):
            if role.guild_id != guild.id:
                raise SimError(f"role {role.name!r} belongs to another guild")
            return role
        return guild.role(role)

    # ------------------------------------------------------------------ reading what was posted

    async def wait_for_message(
        self,
        channel: SimChannel | int,
        predicate: Callable[[SimMessage], bool] | None = None,
        timeout: float = 10.0,
        *,
        after: SimMessage | None = None,
    ) -> SimMessage:
        """The first message in the channel (created after `after`, if given) that satisfies predicate now or
        after a later create or edit."""
        found: list[SimMessage] = []

        def ready() -> bool:
            for message in self.messages(channel):
                if after is not None and message.id <= after.id:
                    continue
                if predicate is None or predicate(message):
                    found.append(message)
                    return True
            return False

        try:
            await self.wait_until(ready, timeout)
        except SimTimeout:
            seen = [(m.content[:60], len(m.embeds), m.custom_ids()) for m in self.messages(channel)]
            raise SimTimeout(
                f"no matching message within {timeout:.1f} s; the channel holds {seen}"
            ) from None
        return found[0]

    def set_rate_limit(
        self,
        route_pattern: str,
        retry_after: float,
        times: int = 1,
        *,
        method: str | None = None,
        is_global: bool = False,
    ) -> RateLimitRule:
        """Answer the next `times` matching requests with 429. `route_pattern` is matched against the path after
        /api/v10 with `*` standing for one path segment, e.g. "/channels/*/messages"."""
        rule = RateLimitRule(
            route_regex(route_pattern), retry_after, times, method.upper() if method else None, is_global
        )
        self.rate_limits.append(rule)
        return rule

    def add_bucket(
        self, route_pattern: str, limit: int, per: float, *, method: str | None = None
    ) -> RateBucket:
        """A Discord-like bucket: `limit` requests per `per` seconds for each channel/guild/webhook matching
        `route_pattern`; answers carry X-RateLimit-* headers (discord.py then waits by itself) and excess
        requests get a 429."""
        bucket = RateBucket(
            f"sim-{len(self.buckets)}",
            route_regex(route_pattern),
            limit,
            per,
            method.upper() if method else None,
        )
        self.buckets.append(bucket)
        return bucket

    # ------------------------------------------------------------------ acting as members

    async def post_message(
        self, member: SimMember, channel: SimChannel, content: str, files: Sequence[FileSpec] = ()
    ) -> SimMessage:
        """A member writes in a channel (the bot sees MESSAGE_CREATE if it asked for message intents)."""
        body = MessageBody(
            {"content": content},
            {
                i: UploadedFile(i, name, data, mimetypes.guess_type(name)[0])
                for i, (name, data) in enumerate(files)
            },
        )
        message = self.create_message(channel, member.user, body, via="member")
        return message

    async def invoke_command(
        self,
        member: SimMember,
        channel: SimChannel,
        name: str,
        options: dict[str, Any] | None = None,
        attachments: Sequence[FileSpec] = (),
        *,
        locale: str = "en-US",
        check_permissions: bool = True,
    ) -> SimInteraction:
        """A member runs a slash command. `name` may hold a subcommand path ("admin credits grant").
        Attachment option values are (filename, bytes); `attachments` fill the command's attachment options
        in declared order. With check_permissions, a member lacking the command's default_member_permissions
        gets SimError, as Discord hides the command from them."""
        from photogen.discord_sim.commands import build_command_data

        self._require_bot()
        command = self.find_command(channel, name.split()[0])
        if command is not None and check_permissions:
            needed = int(command.get("default_member_permissions") or 0)
            if needed and member.permissions & needed != needed:
                raise SimError(f"/{name} is hidden from {member.name}: needs permissions {needed}")
        if command is None and self.require_synced_commands:
            raise SimError(
                f"/{name.split()[0]} was never synced; synced: {self.synced_command_names(channel)}"
            )
        data = build_command_data(self, channel, command, name, options or {}, attachments)
        return await self._interact(2, member, channel, data)

    async def autocomplete(
        self,
        member: SimMember,
        channel: SimChannel,
        name: str,
        options: dict[str, Any],
        focused: str,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """What the member types into option `focused`; returns the bot's choices [{name, value}, …]."""
        from photogen.discord_sim.commands import build_autocomplete_data

        self._require_bot()
        command = self.find_command(channel, name.split()[0])
        if command is None and self.require_synced_commands:
            raise SimError(
                f"/{name.split()[0]} was never synced; synced: {self.synced_command_names(channel)}"
            )
        data = build_autocomplete_data(command, name, options, focused)
        interaction = await self._interact(4, member, channel, data)
        response = await interaction.wait_response(timeout)
        if response.type != 8:
            raise SimError(f"autocomplete answered with callback type {response.type}, expected 8")
        return response.choices

    async def click(
        self, member: SimMember, message: SimMessage, custom_id: str, values: Sequence[str] | None = None
    ) -> SimInteraction:
        """A member presses a button (or picks `values` in a select menu) on a message."""
        self._require_bot()
        current = self.all_messages.get(message.id)
        if current is None or current.deleted:
            raise SimError(f"message {message.id} does not exist (deleted?)")
        component = current.find_component(custom_id)
        if component is None:
            raise SimError(
                f"message {message.id} has no component {custom_id!r}; it has {current.custom_ids()}"
            )
        if component.get("disabled"):
            raise SimError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if values is not None:
            data["values"] = list(values)
        channel = self.channels[current.channel_id]
        return await self._interact(3, member, channel, data, message=current)

    async def submit_modal(
        self, member: SimMember, interaction: SimInteraction, values: dict[str, str]
    ) -> SimInteraction:
        """A member fills in the modal the bot opened in answer to `interaction` (text inputs by custom_id)."""
        response = interaction.response
        if response is None or response.type != 9:
            raise SimError(f"interaction {interaction.id} was not answered with a modal")
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()
        ]
        data = {"custom_id": response.data.get("custom_id"), "components": rows}
        return await self._interact(5, member, interaction.channel, data, message=interaction.message)

    # ------------------------------------------------------------------ commands

    def commands_for(self, guild_id: int | None) -> list[dict[str, Any]]:
        return self.global_commands if guild_id is None else self.guild_commands.setdefault(guild_id, [])

    def find_command(self, channel: SimChannel, name: str) -> dict[str, Any] | None:
        scopes = ([channel.guild_id] if channel.guild_id is not None else []) + [None]
        for scope in scopes:
            for command in self.commands_for(scope):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    def synced_command_names(self, channel: SimChannel | None = None) -> list[str]:
        names = [c["name"] for c in self.global_commands]
        if channel is not None and channel.guild_id is not None:
            names += [c["name"] for c in self.guild_commands.get(channel.guild_id, [])]
        return sorted(names)

    # ------------------------------------------------------------------ internals shared with rest.py

    def _require_bot(self) -> None:
        if not self.bot_connected:
            raise SimError("no bot is connected to the gateway (await sim.wait_for_bot() first)")

    def _emit(self, event: str, data: dict[str, Any], intent: int | None = None) -> None:
        """Queue a gateway event; one pump task sends them in order, so sync world-building calls stay sync."""
        if self._events is not None:
            self._events.put_nowait((event, data, intent))
        self.notify()

    async def _pump_events(self) -> None:
        assert self._events is not None
        while True:
            event, data, intent = await self._events.get()
            try:
                await self.gateway.dispatch(event, data, intent=intent)
            except Exception:
                # One bad send must not stop every later event; the test sees the log and the missing effect.
                log.exception("discord sim: dispatching %s failed", event)
            finally:
                self._events.task_done()

    async def flush_events(self) -> None:
        """Until every queued gateway event has been written to the bot's socket."""
        if self._events is not None:
            await self._events.join()

    async def _interact(
        self,
        kind: int,
        member: SimMember,
        channel: SimChannel,
        data: dict[str, Any],
        *,
        message: SimMessage | None = None,
    ) -> SimInteraction:
        interaction_id = new_snowflake()
        token = f"aW50ZXJhY3Rpb24{secrets.token_urlsafe(48)}"
        guild = member.guild
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel": channel.payload() | {"permissions": str(member.permissions)},
            "channel_id": str(channel.id),
            "member": member.payload(with_permissions=True),
            "token": token,
            "version": 1,
            "app_permissions": str(self.guilds[guild.id].members[self.bot_user.id].permissions),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": self.upload_limit,
        }
        if message is not None:
            payload["message"] = message.payload()
        interaction = SimInteraction(
            self, interaction_id, token, kind, member, channel, payload, message=message
        )
        if message is not None:
            interaction.original = message
        self.interactions[interaction_id] = interaction
        self._by_token[token] = interaction
        self._emit("INTERACTION_CREATE", payload)
        return interaction

    def interaction_by_token(self, token: str) -> SimInteraction | None:
        return self._by_token.get(token)

    def record_response(self, interaction: SimInteraction, response: SimResponse) -> None:
        interaction.response = response
        self.notify()
