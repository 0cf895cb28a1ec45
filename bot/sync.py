"""Command sync only when the command set changed (or an owner asks): never on every start.

Discord rate-limits command upserts hard, and a global sync takes time to propagate, so the bot hashes the
serialized command tree and syncs only when the hash differs from the one recorded after the last sync.
The record is a small file beside the order store, keyed by application id and scope.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from discord import Object
from discord.app_commands import CommandTree

log = logging.getLogger(__name__)


def tree_hash(tree: CommandTree, guild_id: int | None = None) -> str:
    """sha256 of the JSON Discord would receive for this scope's commands (order-independent)."""
    guild = Object(guild_id) if guild_id is not None else None
    payload = sorted(
        (cmd.to_dict(tree) for cmd in tree.get_commands(guild=guild)),
        key=lambda c: (c.get("type", 1), c["name"]),
    )
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class SyncRecord:
    """`{scope: hash}` persisted as JSON with an atomic replace (a crash mid-write leaves the old record)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save(self, scope: str, digest: str) -> None:
        data = self.load()
        data[scope] = digest
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".sync-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


async def sync_if_changed(
    tree: CommandTree, record: SyncRecord, application_id: int, guild_ids: list[int], *, force: bool = False
) -> list[str]:
    """Sync each scope whose hash changed (or all with ``force``); return the scopes synced.

    With ``guild_ids`` the global commands are copied into each guild (instant propagation: test servers,
    a single-community deployment); without, they are synced globally.
    """
    synced: list[str] = []
    known = record.load()
    scopes: list[int | None] = list(guild_ids) or [None]
    for guild_id in scopes:
        if guild_id is not None:
            tree.copy_global_to(guild=Object(guild_id))
        scope = f"{application_id}:{guild_id if guild_id is not None else 'global'}"
        digest = tree_hash(tree, guild_id)
        if not force and known.get(scope) == digest:
            continue
        await tree.sync(guild=Object(guild_id) if guild_id is not None else None)
        record.save(scope, digest)
        synced.append(scope)
        log.info("synced application commands for %s", scope)
    return synced
