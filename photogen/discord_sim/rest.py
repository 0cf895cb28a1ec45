"""REST under /api/v10 plus the sim's CDN route, as aiohttp handlers over a DiscordSim's state."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from photogen.discord_sim.bodies import DiscordError, MessageBody, read_body
from photogen.discord_sim.commands import complete_command, store_commands
from photogen.discord_sim.interactions import (
    AUTOCOMPLETE_RESULT,
    DEFERRED_MESSAGE,
    DEFERRED_UPDATE,
    MESSAGE,
    MODAL,
    UPDATE_MESSAGE,
    SimInteraction,
    SimResponse,
)
from photogen.discord_sim.models import SimChannel, SimMessage
from photogen.discord_sim.server import DiscordSim, RequestRecord

API = "/api/v10"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Routes whose credential is the token in the URL, not the bot token (as on Discord).
_TOKEN_IN_URL = ("/interactions/", "/webhooks/")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # discord.py parses a body as JSON only when Content-Type is exactly "application/json" (no charset).
    return web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json", headers=headers
    )


def error_response(err: DiscordError) -> web.Response:
    return json_response(err.body(), err.status)


def build_app(sim: DiscordSim) -> web.Application:
    api = RestApi(sim)
    app = web.Application(middlewares=[api.middleware], client_max_size=64 * 1024 * 1024)
    app.router.add_get("/gateway", sim.gateway.handle)
    app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", api.cdn)
    r = app.router
    r.add_get(API + "/gateway", api.get_gateway)
    r.add_get(API + "/gateway/bot", api.get_gateway_bot)
    r.add_get(API + "/users/@me", api.get_me)
    r.add_post(API + "/users/@me/channels", api.create_dm)
    r.add_get(API + "/users/{user_id}", api.get_user)
    r.add_get(API + "/oauth2/applications/@me", api.get_application)
    r.add_get(API + "/applications/@me", api.get_application)
    for prefix in ("/applications/{app_id}/commands", "/applications/{app_id}/guilds/{guild_id}/commands"):
        r.add_get(API + prefix, api.list_commands)
        r.add_put(API + prefix, api.overwrite_commands)
        r.add_post(API + prefix, api.upsert_command)
        r.add_get(API + prefix + "/{command_id}", api.get_command)
        r.add_patch(API + prefix + "/{command_id}", api.edit_command)
        r.add_delete(API + prefix + "/{command_id}", api.delete_command)
    r.add_post(API + "/interactions/{interaction_id}/{token}/callback", api.callback)
    r.add_post(API + "/webhooks/{app_id}/{token}", api.followup)
    r.add_get(API + "/webhooks/{app_id}/{token}/messages/{message_id}", api.get_webhook_message)
    r.add_patch(API + "/webhooks/{app_id}/{token}/messages/{message_id}", api.edit_webhook_message)
    r.add_delete(API + "/webhooks/{app_id}/{token}/messages/{message_id}", api.delete_webhook_message)
    r.add_get(API + "/channels/{channel_id}", api.get_channel)
    r.add_get(API + "/channels/{channel_id}/messages", api.list_messages)
    r.add_post(API + "/channels/{channel_id}/messages", api.create_message)
    r.add_get(API + "/channels/{channel_id}/messages/{message_id}", api.get_message)
    r.add_patch(API + "/channels/{channel_id}/messages/{message_id}", api.edit_message)
    r.add_delete(API + "/channels/{channel_id}/messages/{message_id}", api.delete_message)
    r.add_post(API + "/channels/{channel_id}/typing", api.typing)
    r.add_get(API + "/guilds/{guild_id}", api.get_guild)
    r.add_get(API + "/guilds/{guild_id}/channels", api.get_guild_channels)
    r.add_get(API + "/guilds/{guild_id}/roles", api.get_roles)
    r.add_get(API + "/guilds/{guild_id}/members", api.list_members)
    r.add_get(API + "/guilds/{guild_id}/members/{user_id}", api.get_member)
    return app


class RestApi:
    def __init__(self, sim: DiscordSim) -> None:
        self.sim = sim

    # ------------------------------------------------------------------ cross-cutting

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await self._guarded(request, handler)
        self.sim.requests.append(RequestRecord(request.method, request.path, response.status, time.time()))
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith(API + "/"):
            return await handler(request)
        route = path[len(API) :]
        if request.match_info.http_exception is not None:
            self.sim.unhandled.append(f"{request.method} {path}")
            return json_response({"message": "404: Not Found", "code": 0}, 404)
        needs_bot_token = route != "/gateway" and not route.startswith(_TOKEN_IN_URL)
        if needs_bot_token and request.headers.get("Authorization") != f"Bot {self.sim.token}":
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        for rule in self.sim.rate_limits:
            if rule.matches(request.method, route):
                rule.times -= 1
                rule.hits += 1
                return self._rate_limited(rule.retry_after, rule.is_global)
        bucket = next((b for b in self.sim.buckets if b.matches(request.method, route)), None)
        limit_headers: dict[str, str] = {}
        if bucket is not None:
            allowed, remaining, reset_after = bucket.take(route)
            if not allowed:
                return self._rate_limited(reset_after, False, limit=bucket.limit, bucket=bucket.name)
            limit_headers = _limit_headers(bucket.limit, remaining, reset_after, bucket.name)
        try:
            response = await handler(request)
        except DiscordError as err:
            response = error_response(err)
        response.headers.update(limit_headers)
        return response

    @staticmethod
    def _rate_limited(
        retry_after: float, is_global: bool, *, limit: int = 5, bucket: str = "sim-injected"
    ) -> web.Response:
        headers = {
            # discord.py treats a 429 without Via as a Cloudflare ban; Discord's own 429s carry it.
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after))),
            **_limit_headers(limit, 0, retry_after, bucket),
            "X-RateLimit-Scope": "global" if is_global else "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        return json_response(body, 429, headers)

    # ------------------------------------------------------------------ lookups

    def _channel(self, request: web.Request) -> SimChannel:
        channel = self.sim.channels.get(_int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _message(self, request: web.Request, channel: SimChannel) -> SimMessage:
        message = self.sim.all_messages.get(_int(request.match_info["message_id"]))
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    def _guild_id(self, request: web.Request) -> int | None:
        raw = request.match_info.get("guild_id")
        if raw is None:
            return None
        guild_id = _int(raw)
        if guild_id not in self.sim.guilds or self.sim.bot_user.id not in self.sim.guilds[guild_id].members:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild_id

    def _check_app(self, request: web.Request) -> None:
        if _int(request.match_info["app_id"]) != self.sim.application_id:
            raise DiscordError(403, 50001, "Missing Access")

    def _webhook_interaction(self, request: web.Request) -> SimInteraction:
        interaction = self.sim.interaction_by_token(request.match_info["token"])
        if interaction is None or _int(request.match_info["app_id"]) != self.sim.application_id:
            raise DiscordError(404, 10015, "Unknown Webhook")
        ttl = self.sim.interaction_token_ttl
        if ttl is not None and time.monotonic() - interaction.created > ttl:
            interaction.expired = True  # Discord's interaction tokens live 15 minutes
        if interaction.expired:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return interaction

    # ------------------------------------------------------------------ gateway, users, application

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.sim.gateway_url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.sim.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def get_me(self, request: web.Request) -> web.Response:
        return json_response(
            self.sim.bot_user.payload() | {"verified": True, "mfa_enabled": False, "flags": 0}
        )

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.sim.users.get(_int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def create_dm(self, request: web.Request) -> web.Response:
        body = await read_body(request, upload_limit=self.sim.upload_limit)
        user = self.sim.users.get(_int(str(body.payload.get("recipient_id", ""))))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return json_response(self.sim.dm_channel(user).payload())

    async def get_application(self, request: web.Request) -> web.Response:
        sim = self.sim
        return json_response(
            {
                "id": str(sim.application_id),
                "name": sim.bot_user.name,
                "description": "Discord sim application",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": sim.owner.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": sim.bot_user.payload(),
                "interactions_endpoint_url": None,
                "redirect_uris": [],
            }
        )

    # ------------------------------------------------------------------ application commands

    async def list_commands(self, request: web.Request) -> web.Response:
        self._check_app(request)
        return json_response(self.sim.commands_for(self._guild_id(request)))

    async def overwrite_commands(self, request: web.Request) -> web.Response:
        self._check_app(request)
        guild_id = self._guild_id(request)
        try:
            commands = json.loads(await request.read())
        except ValueError:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None
        return json_response(store_commands(self.sim, guild_id, commands))

    async def upsert_command(self, request: web.Request) -> web.Response:
        self._check_app(request)
        guild_id = self._guild_id(request)
        command = (await read_body(request, upload_limit=self.sim.upload_limit)).payload
        current = self.sim.commands_for(guild_id)
        others = [
            c
            for c in current
            if (c.get("type", 1), c["name"]) != (command.get("type", 1), command.get("name"))
        ]
        before = {c["name"]: c for c in current}
        stored = store_commands(self.sim, guild_id, [*others, command])
        self.sim.sync_count -= 1  # a single upsert is not a bulk sync
        self.sim.sync_log.pop()
        created = next(c for c in stored if c["name"] == command.get("name"))
        return json_response(created, 200 if command.get("name") in before else 201)

    def _find_command(self, request: web.Request) -> tuple[int | None, dict[str, Any]]:
        self._check_app(request)
        guild_id = self._guild_id(request)
        for command in self.sim.commands_for(guild_id):
            if command["id"] == request.match_info["command_id"]:
                return guild_id, command
        raise DiscordError(404, 10063, "Unknown application command")

    async def get_command(self, request: web.Request) -> web.Response:
        return json_response(self._find_command(request)[1])

    async def edit_command(self, request: web.Request) -> web.Response:
        guild_id, command = self._find_command(request)
        changes = (await read_body(request, upload_limit=self.sim.upload_limit)).payload
        edited = complete_command(self.sim, guild_id, command | changes, command)
        commands = self.sim.commands_for(guild_id)
        commands[commands.index(command)] = edited
        return json_response(edited)

    async def delete_command(self, request: web.Request) -> web.Response:
        guild_id, command = self._find_command(request)
        self.sim.commands_for(guild_id).remove(command)
        return web.Response(status=204)

    # ------------------------------------------------------------------ interactions

    async def callback(self, request: web.Request) -> web.Response:
        sim = self.sim
        interaction = sim.interactions.get(_int(request.match_info["interaction_id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.response is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        latency = time.monotonic() - interaction.created
        if sim.interaction_deadline is not None and latency > sim.interaction_deadline:
            sim.late_callbacks += 1
            sim.notify()
            raise DiscordError(404, 10062, "Unknown interaction")
        body = await read_body(request, upload_limit=sim.upload_limit)
        kind = body.payload.get("type")
        data = body.payload.get("data") or {}
        inner = MessageBody(data, body.files)
        message: SimMessage | None = None
        if kind == MESSAGE:
            message = sim.create_message(
                interaction.channel, sim.bot_user, inner, via="interaction", interaction=interaction
            )
            interaction.original = message
        elif kind == DEFERRED_MESSAGE:
            flags = 128 | (int(data.get("flags") or 0) & 64)
            message = sim.create_message(
                interaction.channel,
                sim.bot_user,
                MessageBody({}),
                via="interaction",
                interaction=interaction,
                extra_flags=flags,
                validate=False,
            )
            interaction.original = message
        elif kind in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            if interaction.message is None:
                raise DiscordError(400, 40043, "This interaction response type needs a component interaction")
            message = interaction.message
            if kind == UPDATE_MESSAGE:
                sim.edit_message(message, inner)
        elif kind == AUTOCOMPLETE_RESULT:
            if interaction.type != 4:
                raise DiscordError(
                    400, 50035, "Invalid Form Body: autocomplete results answer autocomplete only"
                )
            if len(data.get("choices") or []) > 25:
                raise DiscordError(400, 50035, "Invalid Form Body: at most 25 choices")
        elif kind == MODAL:
            if interaction.type == 5:
                raise DiscordError(400, 50035, "Invalid Form Body: a modal cannot answer a modal")
            if not data.get("custom_id") or not data.get("title"):
                raise DiscordError(400, 50035, "Invalid Form Body: a modal needs custom_id and title")
        else:
            raise DiscordError(400, 50035, f"Invalid Form Body: interaction callback type {kind!r}")
        sim.record_response(interaction, SimResponse(int(kind), data, latency, message))
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        result: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "response_message_loading": kind == DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(message is not None and message.ephemeral),
            }
        }
        if message is not None:
            result["interaction"]["response_message_id"] = str(message.id)
        resource: dict[str, Any] = {"type": kind}
        if message is not None and kind in (MESSAGE, UPDATE_MESSAGE):
            resource["message"] = message.payload()
        result["resource"] = resource
        return json_response(result)

    async def followup(self, request: web.Request) -> web.Response:
        sim = self.sim
        interaction = self._webhook_interaction(request)
        if interaction.response is None or interaction.response.type == AUTOCOMPLETE_RESULT:
            raise DiscordError(404, 10015, "Unknown Webhook")
        body = await read_body(request, upload_limit=sim.upload_limit)
        original = interaction.original
        if (
            original is not None
            and original.loading
            and not original.deleted  # a deleted placeholder is gone: the followup is a message of its own
            and not interaction.followups
            and interaction.response.type == DEFERRED_MESSAGE
        ):
            # Discord: the first followup after a "thinking" defer replaces the placeholder, keeping its
            # ephemerality.
            message = sim.edit_message(original, body, clear_loading=True)
        else:
            message = sim.create_message(
                interaction.channel, sim.bot_user, body, via="followup", interaction=interaction
            )
        interaction.followups.append(message)
        sim.notify()
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(message.payload())
        return web.Response(status=204)

    def _webhook_message(self, request: web.Request) -> tuple[SimInteraction, SimMessage]:
        interaction = self._webhook_interaction(request)
        raw = request.match_info["message_id"]
        if raw == "@original":
            message = interaction.original
        else:
            wanted = _int(raw)
            message = next((m for m in interaction.followups if m.id == wanted), None)
        if message is None or message.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        return interaction, message

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        return json_response(self._webhook_message(request)[1].payload())

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        body = await read_body(request, upload_limit=self.sim.upload_limit)
        return json_response(self.sim.edit_message(message, body, clear_loading=True).payload())

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        self.sim.delete_message(message)
        return web.Response(status=204)

    # ------------------------------------------------------------------ channels and messages

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel(request).payload())

    async def list_messages(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        limit = min(max(_int(request.query.get("limit", "50")), 1), 100)
        messages = [m for m in self.sim.messages(channel) if not m.ephemeral]
        if "before" in request.query:
            messages = [m for m in messages if m.id < _int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > _int(request.query["after"])][:limit]
        return json_response([m.payload() for m in reversed(messages[-limit:])])

    async def get_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        return json_response(self._message(request, channel).payload())

    async def create_message(self, request: web.Request) -> web.Response:
        sim = self.sim
        channel = self._channel(request)
        body = await read_body(request, upload_limit=sim.upload_limit)
        nonce = body.payload.get("nonce")
        if nonce is not None and (not isinstance(nonce, (str, int)) or len(str(nonce)) > 25):
            raise DiscordError(
                400, 50035, "Invalid Form Body: nonce must be a string of at most 25 characters"
            )
        if nonce is not None and body.payload.get("enforce_nonce"):
            existing = sim.find_nonce(channel, sim.bot_user, str(nonce))
            if existing is not None:
                # Discord returns the message the nonce already made instead of posting a second one.
                return json_response(existing.payload())
        message = sim.create_message(channel, sim.bot_user, body, via="rest")
        return json_response(message.payload())

    async def edit_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        message = self._message(request, channel)
        if message.author.id != self.sim.bot_user.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        body = await read_body(request, upload_limit=self.sim.upload_limit)
        return json_response(self.sim.edit_message(message, body).payload())

    async def delete_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        self.sim.delete_message(self._message(request, channel))
        return web.Response(status=204)

    async def typing(self, request: web.Request) -> web.Response:
        self._channel(request)
        return web.Response(status=204)

    # ------------------------------------------------------------------ guilds

    async def get_guild(self, request: web.Request) -> web.Response:
        guild = self.sim.guilds[self._guild_id(request) or 0]
        data = {
            k: v
            for k, v in guild.payload().items()
            if k not in ("members", "channels", "threads", "presences", "voice_states")
        }
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self.sim.guilds[self._guild_id(request) or 0]
        return json_response([c.payload() for c in guild.channels])

    async def get_roles(self, request: web.Request) -> web.Response:
        guild = self.sim.guilds[self._guild_id(request) or 0]
        return json_response([r.payload() for r in guild.roles])

    async def list_members(self, request: web.Request) -> web.Response:
        guild = self.sim.guilds[self._guild_id(request) or 0]
        limit = min(max(_int(request.query.get("limit", "1")), 1), 1000)
        after = _int(request.query.get("after", "0"))
        members = sorted((m for m in guild.members.values() if m.id > after), key=lambda m: m.id)
        return json_response([m.payload() for m in members[:limit]])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self.sim.guilds[self._guild_id(request) or 0]
        member = guild.members.get(_int(request.match_info["user_id"]))
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return json_response(member.payload())

    # ------------------------------------------------------------------ CDN

    async def cdn(self, request: web.Request) -> web.Response:
        attachment = self.sim.attachments.get(_int(request.match_info["attachment_id"]))
        if (
            attachment is None
            or request.match_info["filename"] != attachment.filename
            or not attachment.url.startswith(
                f"{self.sim.base_url}/attachments/{request.match_info['channel_id']}/"
            )
        ):
            return web.Response(status=404, text="Not Found")
        return web.Response(
            body=attachment.data, content_type=attachment.content_type or "application/octet-stream"
        )


def _limit_headers(limit: int, remaining: int, reset_after: float, bucket: str) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }


def _int(raw: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise DiscordError(400, 50035, f"Invalid Form Body: {raw!r} is not a snowflake") from None
