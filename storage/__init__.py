"""storage — the bottom of Photogen: settings, the SQLite order store, the blob stores, the blob key layout.

Order store (one unit of work = one ``transaction``)::

    from storage import open_engine, migrate, transaction, orders
    migrate(settings.database_url)                     # alembic upgrade head, from any cwd
    engine = open_engine(settings.database_url)        # WAL, busy timeout, foreign keys
    with transaction(engine) as s:                     # BEGIN IMMEDIATE … COMMIT
        order = orders.create_order(s, user_id=42, kind="render", charge=1, starting_credits=50)
        orders.mark_queued(s, order.id)
    with transaction(engine) as s:
        orders.apply_event(s, event_id, order.id, status="delivered",
                           deliveries=[orders.NewDelivery("render_result", {...})])

Blob stores: ``storage.blobs.open_blob_store(settings) -> BlobStore`` (local folder or S3).
Settings: ``storage.settings.load_settings()`` / ``get_settings()``.
"""

from storage import orders, standing
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
    Delivery,
    GuildSettings,
    Image,
    Job,
    MemberStanding,
    Order,
    TrainedModel,
    User,
)
from storage.orders import (
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
    "current_revision",
    "head_revision",
    "migrate",
    "open_engine",
    "orders",
    "read_session",
    "standing",
    "transaction",
]
