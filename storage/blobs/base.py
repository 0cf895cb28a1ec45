"""The blob store interface: one contract, a local-folder and an S3 backend."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO


class BlobError(Exception):
    """Base of blob store errors."""


class BlobNotFound(BlobError, KeyError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no blob at {self.key!r}"


class InvalidKey(BlobError, ValueError):
    """A key that could escape the store's root or is otherwise malformed."""


_SEGMENT_OK = re.compile(r"[A-Za-z0-9._=+@-]+")


def validate_key(key: str, *, prefix: bool = False) -> str:
    """Refuse keys that could escape a root: '..', '.', absolute paths, NUL, backslashes, empty segments.

    With ``prefix=True`` an empty string or a trailing '/' is allowed (a listing prefix).
    """
    if not isinstance(key, str):
        raise InvalidKey(f"blob key must be a string, got {type(key).__name__}")
    if prefix and key == "":
        return key
    if len(key) > 1024:
        raise InvalidKey("blob key is longer than 1024 characters")
    if "\x00" in key or "\\" in key:
        raise InvalidKey(f"blob key {key!r} contains a NUL or a backslash")
    if key.startswith("/"):
        raise InvalidKey(f"blob key {key!r} is absolute")
    parts = key.split("/")
    if prefix and parts[-1] == "":
        parts = parts[:-1]
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidKey(f"blob key {key!r} has an empty, '.' or '..' segment")
        if not _SEGMENT_OK.fullmatch(part):
            raise InvalidKey(f"blob key {key!r} has characters outside [A-Za-z0-9._=+@-]")
    return key


class BlobStore(ABC):
    """Synchronous blob store. Async callers wrap calls in ``asyncio.to_thread``."""

    @abstractmethod
    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        """Write atomically: readers see the old object or the whole new one, never a part."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise BlobNotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` in lexicographic order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one key; deleting a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix``; return how many were deleted. An empty prefix is refused."""

    @abstractmethod
    def url(self, key: str, expires_s: int = 3600) -> str:
        """A URL a Discord user can open: presigned GET on S3, a signed served URL locally."""
