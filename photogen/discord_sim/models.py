"""The sim's world: users, guilds, roles, channels, members, messages and their attachments.

Each entity knows how to render itself as the JSON payload Discord would send, so the REST side and the gateway
side never disagree about shapes.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_counter = itertools.count()


def new_snowflake() -> int:
    """A Discord-shaped id: milliseconds since Discord's epoch in the high bits, so created_at is meaningful."""
    return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(_counter) & 0x3FFFFF)


def safe_filename(name: str) -> str:
    """Discord's attachment filename rule: anything but letters, digits, dot, dash and underscore becomes "_"
    (so no path separators or URL-special characters ever reach a CDN URL)."""
    cleaned = _UNSAFE_FILENAME.sub("_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).lstrip(".")
    return cleaned[:200] or "unknown"


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height as Discord reports them for images: read from the header only; None if unreadable."""
    from PIL import Image  # imported here: only image attachments need it

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


# Permission bits the sim needs to reason about (Discord's values).
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 53) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    0x0000_0006_3206_4E41 & ~ADMINISTRATOR
)  # view, send, read history, use commands …


@dataclass(eq=False)
class SimUser:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass(eq=False)
class SimRole:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass(eq=False)
class SimChannel:
    id: int
    name: str
    guild_id: int | None  # None for a DM
    type: int = 0  # 0 text, 1 DM
    position: int = 0
    recipient: SimUser | None = None
    nsfw: bool = False  # Discord's "age-restricted channel" flag

    def payload(self) -> dict[str, Any]:
        if self.type == 1:
            assert self.recipient is not None
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": None,
                "recipients": [self.recipient.payload()],
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "nsfw": self.nsfw,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass(eq=False)
class SimMember:
    user: SimUser
    guild: SimGuild
    roles: list[SimRole] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def permissions(self) -> int:
        """Guild-level permissions: @everyone's plus every role's; the owner and administrators hold all."""
        if self.user.id == self.guild.owner_id:
            return ALL_PERMISSIONS
        perms = self.guild.everyone.permissions
        for role in self.roles:
            perms |= role.permissions
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def payload(self, *, with_permissions: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user.payload(),
            "nick": self.nick,
            "avatar": None,
            "roles": [str(r.id) for r in self.roles],
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_permissions:
            data["permissions"] = str(self.permissions)
        return data


@dataclass(eq=False)
class SimGuild:
    id: int
    name: str
    owner_id: int
    roles: list[SimRole] = field(default_factory=list)
    channels: list[SimChannel] = field(default_factory=list)
    members: dict[int, SimMember] = field(default_factory=dict)

    @property
    def everyone(self) -> SimRole:
        return self.roles[0]  # Discord's @everyone role shares the guild's id and always comes first

    def role(self, name: str) -> SimRole:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(f"guild {self.name!r} has no role {name!r}")

    def channel(self, name: str) -> SimChannel:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(f"guild {self.name!r} has no channel {name!r}")

    def payload(self) -> dict[str, Any]:
        """The GUILD_CREATE payload with every member (the gateway trims it for bots without the members intent)."""
        members = list(self.members.values())
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "joined_at": iso_now(),
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": [m.payload() for m in members],
            "channels": [c.payload() for c in self.channels],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }


@dataclass(eq=False)
class SimAttachment:
    """A file the sim holds and serves from its own CDN route; `data` is the exact bytes uploaded."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None
    dimensions: tuple[int, int] | None = field(init=False)

    def __post_init__(self) -> None:
        is_image = (self.content_type or "").startswith("image/")
        self.dimensions = image_size(self.data) if is_image else None

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.dimensions is not None:
            data["width"], data["height"] = self.dimensions
        if self.description:
            data["description"] = self.description
        return data


@dataclass(eq=False)
class SimMessage:
    """Every message posted through the sim: by the bot (REST, interaction response, followup) or by a member."""

    id: int
    channel_id: int
    guild_id: int | None
    author: SimUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[SimAttachment] = field(default_factory=list)
    allowed_mentions: dict[str, Any] | None = None
    flags: int = 0
    nonce: str | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_id: int | None = None
    via: str = "rest"  # rest | interaction | followup | member
    timestamp: str = field(default_factory=iso_now)
    edited_timestamp: str | None = None
    edits: int = 0
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & 64)

    @property
    def loading(self) -> bool:
        """A deferred response's 'Bot is thinking…' placeholder."""
        return bool(self.flags & 128)

    @property
    def files(self) -> dict[str, bytes]:
        return {a.filename: a.data for a in self.attachments}

    @property
    def pings_everyone(self) -> bool:
        """Whether Discord would ping @everyone/@here for this message, given its allowed_mentions."""
        if "@everyone" not in self.content and "@here" not in self.content:
            return False
        if self.allowed_mentions is None:
            return True  # without allowed_mentions Discord parses every mention
        return "everyone" in (self.allowed_mentions.get("parse") or [])

    @property
    def pinged_user_ids(self) -> set[int]:
        """The users Discord would ping for this message, given its allowed_mentions."""
        mentioned = {int(m) for m in _USER_MENTION.findall(self.content)}
        am = self.allowed_mentions
        if am is None or "users" in (am.get("parse") or []):
            return mentioned
        return mentioned & {int(u) for u in am.get("users") or []}

    def custom_ids(self) -> list[str]:
        return [c.get("custom_id", "") for row in self.components for c in row.get("components", [])]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        for row in self.components:
            for component in row.get("components", []):
                if component.get("custom_id") == custom_id:
                    return component
        return None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [a.payload() for a in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "type": 0 if self.interaction_id is None else 20,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.nonce is not None:
            data["nonce"] = self.nonce
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        return data
