"""The agent's local copies of members' LoRAs, kept between jobs, one folder per member.

``loras/{user_id}/{hash}.safetensors`` with ``{hash}.key`` beside it naming the blob it copies, so a forgotten
member's folder is one delete, and a copy whose blob is gone (model deleted, member forgotten) is found and
removed by ``drop_stale``, which the agent runs while idle.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from pathlib import Path

from storage import keys
from storage.blobs.base import BlobStore

log = logging.getLogger(__name__)

_NO_OWNER = "_shared"  # a LoRA outside users/ (none today): kept apart from every member's folder


class LoraCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()  # gathered render jobs of one member fetch the same file side by side

    def path_for(self, key: str, data: bytes) -> Path:
        """A local file holding ``data`` (the blob at ``key``); rewritten only when the bytes change, so the
        renderer recognises a member's adapter that is still loaded."""
        member = self.folder / (keys.owner_of(key) or _NO_OWNER)
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = member / f"{name}.safetensors"
        with self._lock:
            member.mkdir(parents=True, exist_ok=True)
            (member / f"{name}.key").write_text(key)
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                return path
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path

    def purge_member(self, user_id: str) -> list[str]:
        """Delete every local copy of the member's LoRAs; return the blob keys they copied."""
        try:
            folder = self.folder / keys.user_prefix(user_id).split("/")[1]
        except ValueError:
            return []
        if not folder.exists():
            return []
        copied = [_read_key(marker) for marker in folder.glob("*.key")]
        shutil.rmtree(folder, ignore_errors=True)
        log.info("purged the local LoRA copies of a forgotten member")
        return [key for key in copied if key]

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*/*.safetensors")) if self.folder.is_dir() else []

    def drop_stale(self, blobs: BlobStore) -> list[str]:
        """Delete local copies whose blob no longer exists; return the keys they copied."""
        dropped: list[str] = []
        for path in self.files():
            marker = path.with_suffix(".key")
            key = ""
            try:
                key = marker.read_text().strip()
                gone = not blobs.exists(key)
            except FileNotFoundError:
                gone = True  # a copy of unknown origin cannot be checked: not kept
            except Exception:
                log.warning("could not check the local LoRA %s", path.name, exc_info=True)
                continue
            if gone:
                path.unlink(missing_ok=True)
                marker.unlink(missing_ok=True)
                dropped.append(key)
        return [key for key in dropped if key]


def _read_key(marker: Path) -> str:
    try:
        return marker.read_text().strip()
    except OSError:
        return ""
