"""Copies a training's newest checkpoint between the local checkpoint folder and the job's checkpoint prefix
(``users/{user_id}/checkpoints/{job_id}/``, storage.keys.checkpoint_prefix: forgetting the member deletes it).

The engine keeps ``LATEST`` (the name of the newest complete ``step-NNNNNNNN/`` folder) beside the folders. The
blob store mirrors that: the folder's files are uploaded first and ``LATEST`` last, so an agent killed mid-upload
leaves the previous checkpoint in force, and a machine that picks the job up finds a complete one.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from storage.blobs.base import BlobNotFound, BlobStore, validate_key

log = logging.getLogger(__name__)

LATEST = "LATEST"
_FOLDER = re.compile(r"step-\d{1,12}")
_FILE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class CheckpointSync:
    def __init__(self, blobs: BlobStore, prefix: str, local_dir: Path) -> None:
        self.blobs = blobs
        self.prefix = validate_key(prefix, prefix=True)
        self.local_dir = local_dir
        self.uploaded: str | None = None

    def local_latest(self) -> str | None:
        try:
            name = (self.local_dir / LATEST).read_text().strip()
        except FileNotFoundError:
            return None
        return name if _FOLDER.fullmatch(name) else None

    def has_new(self) -> bool:
        """A local checkpoint newer than the one in the store."""
        name = self.local_latest()
        return name is not None and name != self.uploaded

    @staticmethod
    def step_of(name: str) -> int:
        return int(name.removeprefix("step-"))

    def upload_if_new(self) -> tuple[int, float] | None:
        """Upload the newest local checkpoint if it is not in the store yet: (step, seconds) or None."""
        name = self.local_latest()
        if name is None or name == self.uploaded:
            return None
        folder = self.local_dir / name
        started = time.monotonic()
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if not files:
            return None
        for path in files:
            with path.open("rb") as fh:
                self.blobs.put(f"{self.prefix}{name}/{path.name}", fh)
        self.blobs.put(self.prefix + LATEST, name.encode(), content_type="text/plain")
        for key in list(self.blobs.list(self.prefix)):
            rest = key.removeprefix(self.prefix)
            if rest != LATEST and not rest.startswith(name + "/"):
                self.blobs.delete(key)
        self.uploaded = name
        return self.step_of(name), time.monotonic() - started

    def download(self) -> int:
        """Fetch the newest stored checkpoint into the (emptied) local folder; return its step, 0 if none."""
        shutil.rmtree(self.local_dir, ignore_errors=True)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        # Listed first: an agent may list only under checkpoints/ (IAM), and S3 answers a missing key 403, not
        # 404, to a role that may not list where it asks.
        if self.prefix + LATEST not in set(self.blobs.list(self.prefix)):
            return 0
        try:
            name = self.blobs.get(self.prefix + LATEST).decode().strip()
        except BlobNotFound:
            return 0
        if not _FOLDER.fullmatch(name):
            log.warning("ignoring checkpoint with odd name %r under %s", name[:40], self.prefix)
            return 0
        folder = self.local_dir / name
        folder.mkdir()
        count = 0
        for key in self.blobs.list(f"{self.prefix}{name}/"):
            file_name = key.rsplit("/", 1)[-1]
            if not _FILE.fullmatch(file_name) or file_name.startswith("."):
                continue  # never let a stored name pick a path outside the folder
            (folder / file_name).write_bytes(self.blobs.get(key))
            count += 1
        if count == 0:
            return 0
        (self.local_dir / LATEST).write_text(name)
        self.uploaded = name
        return self.step_of(name)

    def delete_remote(self) -> None:
        self.blobs.delete_prefix(self.prefix)
