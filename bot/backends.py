"""What the bot talks to besides Discord: the order store, the blob store and the job queues."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from cloud.queues import Queues, open_queues
from storage import migrate, open_engine
from storage.blobs import open_blob_store
from storage.blobs.base import BlobStore
from storage.settings import Settings


@dataclass
class Backends:
    settings: Settings
    engine: Engine
    blobs: BlobStore
    queues: Queues
    # agent id → last time (epoch s) one of its events arrived: /queue and /admin status show who is alive
    agents_seen: dict[str, float] = field(default_factory=dict)

    def close(self) -> None:
        self.engine.dispose()
        close = getattr(self.queues, "close", None)
        if callable(close):
            close()


def open_backends(settings: Settings) -> Backends:
    """Blocking (schema upgrade, file opens): call through asyncio.to_thread."""
    migrate(settings.database_url)
    return Backends(
        settings=settings,
        engine=open_engine(settings.database_url),
        blobs=open_blob_store(settings),
        queues=open_queues(settings),
    )
