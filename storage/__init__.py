"""storage — the bottom of Photogen: settings, the SQLite order store, the blob stores, the blob key layout.

The order life cycle (storage.lifecycle: one public API, each call one transaction, plain records back)::

    from storage import lifecycle, migrate, open_engine
    migrate(settings.database_url)                     # alembic upgrade head, from any cwd
    engine = open_engine(settings.database_url)        # WAL, busy timeout, foreign keys
    lifecycle.create_order(engine, order_id=..., kind=JobKind.RENDER, job=..., limits=..., ...)
    lifecycle.mark_queued(engine, order_id)
    lifecycle.apply_event(engine, event, price_per_hour=0.0, advice_after=3)   # a cloud.messages.Event

Its row operations (one Session each, never committing; the caller's ``transaction(engine)``) are
storage.order_store; the shared names (OrderStatus, JobKind, EventKind, the id pattern) storage.contracts.

Blob stores: ``storage.blobs.open_blob_store(settings) -> BlobStore`` (local folder or S3).
Settings: ``storage.settings.load_settings()`` / ``get_settings()``.
"""

from storage import credits, order_store, standing
from storage.db import (
    SchemaError,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
    open_engine,
    read_session,
    transaction,
)
from storage.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ORDER_FLOW,
    ORDER_STATUSES,
    AppliedEvent,
    AuditEntry,
    CreditEntry,
    Delivery,
    GuildSettings,
    Image,
    Job,
    MemberStanding,
    Order,
    TrainedModel,
    User,
)
from storage.order_store import (
    DeletionReceipt,
    EventOutcome,
    InsufficientCredits,
    NewDelivery,
    NewImage,
    OrderStoreError,
    UnknownOrder,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "ORDER_FLOW",
    "ORDER_STATUSES",
    "AppliedEvent",
    "AuditEntry",
    "CreditEntry",
    "DeletionReceipt",
    "Delivery",
    "EventOutcome",
    "GuildSettings",
    "Image",
    "InsufficientCredits",
    "Job",
    "MemberStanding",
    "NewDelivery",
    "NewImage",
    "Order",
    "OrderStoreError",
    "SchemaError",
    "TrainedModel",
    "UnknownOrder",
    "User",
    "alembic_config",
    "credits",
    "current_revision",
    "head_revision",
    "migrate",
    "open_engine",
    "order_store",
    "read_session",
    "standing",
    "transaction",
]
