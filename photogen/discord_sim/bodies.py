"""Reading what the bot sends: JSON or multipart (payload_json + files[n]) message bodies, checked the way
Discord checks them, so a bot that would be refused by Discord is refused here too."""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_CUSTOM_ID = 100
MAX_FILES = 10
_FILE_FIELD = re.compile(r"^files\[(\d+)\]$")


class DiscordError(Exception):
    """A Discord-style error reply: HTTP status, Discord error code and message."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def invalid_form(field_name: str, message: str) -> DiscordError:
    return DiscordError(
        400,
        50035,
        "Invalid Form Body",
        {field_name: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}},
    )


@dataclass
class UploadedFile:
    index: int
    filename: str
    data: bytes
    content_type: str | None


@dataclass
class MessageBody:
    """One request's message fields. `present` names the keys the bot actually sent (edits change only those)."""

    payload: dict[str, Any]
    files: dict[int, UploadedFile] = field(default_factory=dict)

    @property
    def present(self) -> set[str]:
        return set(self.payload)


async def read_body(request: web.Request, *, upload_limit: int) -> MessageBody:
    """Parse a JSON or multipart body; refuse oversized uploads with Discord's 413 (code 40005)."""
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        payload: dict[str, Any] = {}
        files: dict[int, UploadedFile] = {}
        total = 0
        while (part := await reader.next()) is not None:
            name = part.name or ""  # type: ignore[union-attr]
            if name == "payload_json":
                payload = _json_object(await part.read())  # type: ignore[union-attr]
                continue
            match = _FILE_FIELD.match(name)
            if match is None:
                continue
            data = bytes(await part.read())  # type: ignore[union-attr]
            total += len(data)
            if len(data) > upload_limit or total > upload_limit:
                raise DiscordError(413, 40005, "Request entity too large")
            filename = part.filename or f"file{match.group(1)}"  # type: ignore[union-attr]
            content_type = part.headers.get("Content-Type") or mimetypes.guess_type(filename)[0]
            files[int(match.group(1))] = UploadedFile(int(match.group(1)), filename, data, content_type)
        if len(files) > MAX_FILES:
            raise invalid_form("files", f"Must be {MAX_FILES} or fewer in length.")
        return MessageBody(payload, files)
    raw = await request.read()
    return MessageBody(_json_object(raw) if raw else {})


def _json_object(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc
    if not isinstance(data, dict):
        raise DiscordError(400, 50109, "The request body contains invalid JSON.")
    return data


def check_message(body: MessageBody, *, creating: bool) -> None:
    """Discord's limits on message fields; `creating` adds the empty-message rule."""
    p = body.payload
    content = p.get("content")
    if content is not None and (not isinstance(content, str) or len(content) > MAX_CONTENT):
        raise invalid_form("content", f"Must be {MAX_CONTENT} or fewer in length.")
    embeds = p.get("embeds")
    if embeds is not None:
        if not isinstance(embeds, list) or len(embeds) > MAX_EMBEDS:
            raise invalid_form("embeds", f"Must be {MAX_EMBEDS} or fewer in length.")
        for i, embed in enumerate(embeds):
            if not isinstance(embed, dict):
                raise invalid_form(f"embeds.{i}", "Must be an object.")
            if len(embed.get("title") or "") > 256 or len(embed.get("description") or "") > 4096:
                raise invalid_form(f"embeds.{i}", "Embed title or description too long.")
    components = p.get("components")
    if components is not None:
        _check_components(components)
    if creating:
        has_content = (
            bool(content)
            or bool(embeds)
            or bool(body.files)
            or bool(components)
            or bool(p.get("sticker_ids"))
        )
        if not has_content and not p.get("poll"):
            raise DiscordError(400, 50006, "Cannot send an empty message")


def _check_components(rows: Any) -> None:
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise invalid_form("components", f"Must be {MAX_ROWS} or fewer in length.")
    seen: set[str] = set()
    for r, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("type") != 1:
            raise invalid_form(f"components.{r}", "Top-level components must be action rows.")
        children = row.get("components") or []
        if not children or len(children) > MAX_PER_ROW:
            raise invalid_form(
                f"components.{r}.components", f"Must be between 1 and {MAX_PER_ROW} in length."
            )
        for c, child in enumerate(children):
            custom_id = child.get("custom_id")
            if custom_id is None:
                if child.get("style") != 5:  # only link buttons go without a custom_id
                    raise invalid_form(f"components.{r}.components.{c}.custom_id", "This field is required")
                continue
            if len(custom_id) > MAX_CUSTOM_ID:
                raise invalid_form(
                    f"components.{r}.components.{c}.custom_id", f"Must be {MAX_CUSTOM_ID} or fewer in length."
                )
            if custom_id in seen:
                raise invalid_form(
                    f"components.{r}.components.{c}.custom_id", "Component custom id cannot be duplicated"
                )
            seen.add(custom_id)
