"""A blob store in a local folder, with HMAC-signed expiring links that the bot's HTTP side serves.

Writes are atomic (temp file in the same folder, fsync, os.replace): a reader sees the old object or the whole
new one. Temp files carry a '~', a character no valid key has, so they can never be listed or clash with a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, urlencode

from storage.blobs.base import BlobError, BlobNotFound, BlobStore, InvalidKey, validate_key

if TYPE_CHECKING:
    from storage.settings import Settings

_CHUNK = 1024 * 1024


def secret_path(root: Path) -> Path:
    """Where a generated link secret is kept: beside the blob folder, never inside it (it is no blob)."""
    root = Path(root).resolve()
    return root.parent / f".{root.name}.url-secret"


def load_or_create_secret(root: Path) -> bytes:
    """The link-signing key persisted beside ``root``; created once, even when processes race to create it."""
    path = secret_path(root)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}~{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        # link() never replaces: the first process to link wins and every other one reads its key.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    text = path.read_text().strip()
    if len(text) < 32:
        raise BlobError(f"link secret file {path} is too short; delete it to have a new one generated")
    return text.encode()


def sign(secret: bytes, key: str, expires: int) -> str:
    return hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def check_signature(
    secret: bytes, key: str, expires: str | int, sig: str, *, at: float | None = None
) -> bool:
    """True for an unexpired link to ``key`` signed with ``secret``. Malformed input is simply not valid."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    if expires_at < (time.time() if at is None else at):
        return False
    if not isinstance(sig, str) or not sig:
        return False
    return hmac.compare_digest(sign(secret, key, expires_at), sig)


def verify_blob_signature(settings: Settings, key: str, expires: str | int, sig: str) -> bool:
    """The bot's HTTP side asks: is this /blobs/{key}?expires=…&sig=… link genuine and unexpired?"""
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return check_signature(_settings_secret(settings), key, expires, sig)


def _settings_secret(settings: Settings) -> bytes:
    if settings.blob_url_secret is not None:
        return settings.blob_url_secret.get_secret_value().encode()
    if not settings.blob_url.startswith("file://"):
        raise BlobError("BLOB_URL_SECRET is not set and the blob store is not a local folder")
    return _cached_secret(str(Path(settings.blob_url.removeprefix("file://")).resolve()))


@lru_cache(maxsize=8)
def _cached_secret(root: str) -> bytes:
    return load_or_create_secret(Path(root))


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; ``url()`` links go through the bot's HTTP side at ``public_base_url``."""

    def __init__(
        self, root: str | Path, *, public_base_url: str | None = None, secret: bytes | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._secret = secret

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = load_or_create_secret(self.root)
        return self._secret

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        # validate_key already refuses '..' and absolute keys; this also catches a symlink planted in the folder.
        if not path.is_relative_to(self.root) or path == self.root:
            raise InvalidKey(f"blob key {key!r} resolves outside the store")
        return path

    def put(self, key: str, data: bytes | BinaryIO, content_type: str | None = None) -> None:
        path = self._path(key)
        source = _as_stream(data)
        if path.is_dir():
            raise BlobError(f"cannot write {key!r}: other blobs live under it as a prefix")
        tmp = path.with_name(f".{path.name}~{uuid.uuid4().hex}.tmp")
        try:
            fh = self._open_new(tmp, key)
            with fh:
                shutil.copyfileobj(source, fh, _CHUNK)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError) and not isinstance(err, ConnectionError):
                raise BlobError(f"cannot write {key!r}: {err.strerror or err}") from err
            raise
        self._fsync_dir(path.parent)

    def _open_new(self, tmp: Path, key: str) -> BinaryIO:
        # A concurrent delete may prune the (momentarily empty) folder between mkdir and open: try again.
        for _ in range(3):
            try:
                tmp.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise BlobError(
                    f"cannot write {key!r}: a blob already exists at one of its parent keys"
                ) from None
            try:
                return open(tmp, "xb")
            except FileNotFoundError:
                continue
        raise BlobError(f"cannot write {key!r}: its folder keeps disappearing")

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        # The rename is durable only once the folder's entry is on disk.
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        except OSError as err:
            raise BlobError(f"cannot read {key!r}: {err.strerror or err}") from err

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_key(prefix, prefix=True)
        # Walk only the deepest folder the prefix fully names; the rest of the prefix filters names (S3 semantics).
        folder = prefix.rpartition("/")[0]
        start = self.root / folder if folder else self.root
        if not start.is_dir():
            return iter(())
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix) and _is_key(key):
                    found.append(key)
        return iter(sorted(found))

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix:
            raise InvalidKey("refusing to delete every blob: the prefix is empty")
        validate_key(prefix, prefix=True)
        count = 0
        for key in list(self.list(prefix)):
            self.delete(key)
            count += 1
        return count

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the root, so deleted members leave no empty trees behind."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def url(self, key: str, expires_s: int = 3600) -> str:
        validate_key(key)
        if not self.public_base_url:
            raise BlobError("no public base URL for local blob links: set BLOB_PUBLIC_BASE_URL")
        if expires_s <= 0:
            raise ValueError("expires_s must be positive")
        expires = int(time.time()) + int(expires_s)
        query = urlencode({"expires": expires, "sig": sign(self.secret, key, expires)})
        return f"{self.public_base_url}/blobs/{quote(key, safe='/')}?{query}"

    def verify(self, key: str, expires: str | int, sig: str) -> bool:
        """True for a link this store signed that has not expired."""
        try:
            validate_key(key)
        except InvalidKey:
            return False
        return check_signature(self.secret, key, expires, sig)


def _as_stream(data: object) -> BinaryIO:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(data)
    if callable(getattr(data, "read", None)):
        return data  # type: ignore[return-value]
    raise TypeError(f"blob data must be bytes or a binary file object, got {type(data).__name__}")


def _is_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def link_secret(settings: Settings) -> bytes:
    """The secret signed blob links are made with (BLOB_URL_SECRET, or the local store's own): the bot's
    /blobs links and the HTTP API's result links."""
    return _settings_secret(settings)
