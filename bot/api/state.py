"""What a request handler is given: the process's shared state and the call (request, caller, parsed body)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from bot.backends import Backends
from bot.errors import UserFacingError
from bot.ratelimit import RateLimiter

from .auth import Caller, KeyCache
from .errors import ApiError, from_service
from .service import Upload

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass
class ApiState:
    backends: Backends
    limiter: RateLimiter
    link_secret: bytes
    base_url: str
    idempotency_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    keys: KeyCache = field(default_factory=KeyCache)


@dataclass
class Form:
    fields: dict[str, str]
    files: list[Upload]
    digest: str  # of the parts' names, file names and contents: the same upload hashes the same


@dataclass
class Call:
    request: web.Request
    state: ApiState
    caller: Caller | None
    raw: bytes | None = None
    form: Form | None = None

    @property
    def b(self) -> Backends:
        return self.state.backends

    @property
    def tenant_id(self) -> str:
        assert self.caller is not None
        return self.caller.tenant_id

    def json_body(self, model: type[M]) -> M:
        try:
            data = json.loads(self.raw or b"")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "The body must be a JSON object.") from None
        try:
            return model.model_validate(data)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()[:5]
            )
            raise ApiError(422, "invalid_request", problems) from None

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking order logic in a worker thread; the services' refusals become API errors."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except UserFacingError as err:
            raise from_service(err) from None


def json_digest(raw: bytes) -> str:
    """The same JSON body (whatever its spacing or key order) hashes the same."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = raw
    return hashlib.sha256(canonical).hexdigest()


async def read_form(request: web.Request) -> Form:
    if request.content_type != "multipart/form-data":
        raise ApiError(
            400, "invalid_body", "Send a multipart/form-data body with the photos as `photos` parts."
        )
    try:
        post = await request.post()
    except (ValueError, HttpProcessingError):  # a malformed part (bad headers, no boundary …)
        raise ApiError(400, "invalid_body", "The multipart body could not be read.") from None
    fields: dict[str, str] = {}
    files: list[Upload] = []
    digest = hashlib.sha256()
    for name, value in post.items():
        if isinstance(value, web.FileField):
            data = value.file.read()
            filename = value.filename or "photo"
        else:
            data = value.encode() if isinstance(value, str) else bytes(value)
            filename = "photo"
        digest.update(f"{name}\0{filename}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        if name == "photos":
            files.append(Upload(filename, data))
        elif isinstance(value, str):
            fields[name] = value
    return Form(fields, files, digest.hexdigest())
