"""Messages and their attachments: created, edited and deleted by every route that posts (channel REST,
interaction callbacks, followups, members), with the gateway events Discord would send for each."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable
from typing import Any

from photogen.discord_sim.bodies import DiscordError, MessageBody, UploadedFile, check_message
from photogen.discord_sim.interactions import SimInteraction
from photogen.discord_sim.models import (
    DISCORD_EPOCH_MS,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
    SimUser,
    new_snowflake,
    safe_filename,
)

INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12


class MessageStore:
    """Mixed into DiscordSim; the annotations name what it uses of the sim."""

    application_id: int
    bot_user: SimUser
    guilds: dict[int, SimGuild]
    channels: dict[int, SimChannel]
    nonce_window_s: float
    notify: Callable[[], None]
    _emit: Callable[..., None]

    @property
    def base_url(self) -> str:  # DiscordSim's, where it listens
        raise NotImplementedError

    def _init_store(self) -> None:
        self.all_messages: dict[int, SimMessage] = {}
        self._channel_messages: dict[int, list[SimMessage]] = {}
        self.attachments: dict[int, SimAttachment] = {}
        self._nonces: dict[tuple[int, int, str], SimMessage] = {}

    def messages(self, channel: SimChannel | int, *, include_deleted: bool = False) -> list[SimMessage]:
        """Every message in the channel, oldest first (ephemeral ones included; see SimMessage.ephemeral)."""
        cid = channel if isinstance(channel, int) else channel.id
        return [m for m in self._channel_messages.get(cid, []) if include_deleted or not m.deleted]

    def _attachment(
        self, channel_id: int, upload: UploadedFile, meta: dict[str, Any] | None
    ) -> SimAttachment:
        attachment_id = new_snowflake()
        filename = safe_filename(str((meta or {}).get("filename") or upload.filename))
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}"
        attachment = SimAttachment(
            attachment_id, filename, upload.data, upload.content_type, url, (meta or {}).get("description")
        )
        self.attachments[attachment_id] = attachment
        return attachment

    def upload_attachment(self, channel: SimChannel, filename: str, data: bytes) -> SimAttachment:
        """Store a member's upload (e.g. a slash command's attachment option) on the sim's CDN."""
        upload = UploadedFile(0, filename, data, mimetypes.guess_type(filename)[0])
        return self._attachment(channel.id, upload, None)

    def _attachments_from(
        self, channel_id: int, body: MessageBody, keep: list[SimAttachment]
    ) -> list[SimAttachment]:
        """The message's attachments after this request: the kept old ones plus each uploaded file, in the
        order the `attachments` metadata gives (files without metadata are appended)."""
        listed = body.payload.get("attachments")
        result: list[SimAttachment] = []
        used: set[int] = set()
        if isinstance(listed, list):
            old = {a.id: a for a in keep}
            for meta in listed:
                raw_id = meta.get("id") if isinstance(meta, dict) else None
                try:
                    key = int(raw_id)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise DiscordError(400, 50035, "Invalid Form Body: attachments need an id") from None
                if key in body.files:
                    result.append(self._attachment(channel_id, body.files[key], meta))
                    used.add(key)
                elif key in old:
                    result.append(old[key])
                else:
                    raise DiscordError(
                        400,
                        50035,
                        f"Invalid Form Body: attachment {key} is not a file or an attachment of this message",
                    )
        else:
            result = list(keep)
        for key in sorted(body.files):
            if key not in used:
                result.append(self._attachment(channel_id, body.files[key], None))
        return result

    def create_message(
        self,
        channel: SimChannel,
        author: SimUser,
        body: MessageBody,
        *,
        via: str,
        interaction: SimInteraction | None = None,
        extra_flags: int = 0,
        validate: bool = True,
    ) -> SimMessage:
        if validate:
            check_message(body, creating=True)
        p = body.payload
        message = SimMessage(
            id=new_snowflake(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=p.get("content") or "",
            embeds=list(p.get("embeds") or []),
            components=list(p.get("components") or []),
            allowed_mentions=p.get("allowed_mentions"),
            flags=(int(p.get("flags") or 0) & 0xFFFF) | extra_flags,
            nonce=str(p["nonce"]) if p.get("nonce") is not None else None,
            via=via,
        )
        message.attachments = self._attachments_from(channel.id, body, [])
        if interaction is not None:
            message.interaction_id = interaction.id
            message.webhook_id = self.application_id
            message.application_id = self.application_id
        self.all_messages[message.id] = message
        if message.nonce is not None:
            self._nonces[(channel.id, author.id, message.nonce)] = message
        self._channel_messages.setdefault(channel.id, []).append(message)
        if not message.ephemeral:
            intent = INTENT_DIRECT_MESSAGES if channel.guild_id is None else INTENT_GUILD_MESSAGES
            self._emit("MESSAGE_CREATE", self._event_payload(message), intent)
        self.notify()
        return message

    def edit_message(
        self, message: SimMessage, body: MessageBody, *, clear_loading: bool = False
    ) -> SimMessage:
        check_message(body, creating=False)
        p = body.payload
        if "content" in p:
            message.content = p["content"] or ""
        if "embeds" in p:
            message.embeds = list(p["embeds"] or [])
        if "components" in p:
            message.components = list(p["components"] or [])
        if "allowed_mentions" in p:
            message.allowed_mentions = p["allowed_mentions"]
        if "flags" in p and p["flags"] is not None:
            # Only SUPPRESS_EMBEDS may change on edit; ephemeral and loading are fixed at creation.
            message.flags = (message.flags & ~4) | (int(p["flags"]) & 4)
        if "attachments" in p or body.files:
            message.attachments = self._attachments_from(message.channel_id, body, message.attachments)
        if clear_loading:
            message.flags &= ~128
        message.edits += 1
        message.edited_timestamp = message.timestamp
        if not message.ephemeral:
            intent = INTENT_DIRECT_MESSAGES if message.guild_id is None else INTENT_GUILD_MESSAGES
            self._emit("MESSAGE_UPDATE", self._event_payload(message), intent)
        self.notify()
        return message

    def delete_message(self, message: SimMessage) -> None:
        message.deleted = True
        if not message.ephemeral:
            data = {"id": str(message.id), "channel_id": str(message.channel_id)}
            if message.guild_id is not None:
                data["guild_id"] = str(message.guild_id)
            intent = INTENT_DIRECT_MESSAGES if message.guild_id is None else INTENT_GUILD_MESSAGES
            self._emit("MESSAGE_DELETE", data, intent)
        self.notify()

    def _event_payload(self, message: SimMessage) -> dict[str, Any]:
        data = message.payload()
        if message.guild_id is not None:
            member = self.guilds[message.guild_id].members.get(message.author.id)
            if member is not None:
                data["member"] = {k: v for k, v in member.payload().items() if k != "user"}
        return data

    def find_nonce(self, channel: SimChannel, author: SimUser, nonce: str) -> SimMessage | None:
        message = self._nonces.get((channel.id, author.id, nonce))
        if message is None:
            return None
        created_s = ((message.id >> 22) + DISCORD_EPOCH_MS) / 1000
        return message if created_s >= time.time() - self.nonce_window_s else None

    def dm_channel(self, user: SimUser) -> SimChannel:
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient is user:
                return channel
        channel = SimChannel(new_snowflake(), f"dm-{user.name}", None, type=1, recipient=user)
        self.channels[channel.id] = channel
        self._channel_messages[channel.id] = []
        return channel
