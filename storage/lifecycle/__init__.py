"""The order life cycle: the one public API for creating, queuing, applying agent events to, cancelling,
forgetting and delivering orders. Every function takes the order store's Engine, is one transaction (or one
read) and returns plain records, so callers (the bot, the demo, benches) never hold ORM rows or write SQL.

    created → queued → training → trained → rendering → delivered, or failed / cancelled (storage.contracts)

Modules: ``placing`` (limits, credits, rows; queued, sent again, failed, cancelled), ``events`` (an agent's
event applied once: the event-to-status mapping and the trust check), ``outbox`` (exactly-once posts),
``reading`` (views and queue positions), ``forgetting`` (pictures, models, members), ``records``.
The row operations they are built of are storage.order_store (one Session each, never committing).
"""

from storage.lifecycle.events import AgentEvent, apply_event, failing_count, forged_reason, record_usage
from storage.lifecycle.forgetting import (
    delete_images,
    delete_member_data,
    delete_model,
    forget_member,
    member_data,
)
from storage.lifecycle.outbox import (
    NOTICE_KIND,
    claim_outbox,
    give_up_outbox,
    mark_outbox_sent,
    pending_outbox,
)
from storage.lifecycle.placing import (
    cancel_order,
    create_order,
    fail_order,
    fail_stuck_order,
    mark_queued,
    new_subject_token,
    note_job_resent,
    precheck_order,
    quiet_orders,
    still_quiet,
)
from storage.lifecycle.reading import (
    get_order,
    image_keys,
    job_id_of,
    list_models,
    list_orders,
    queue_position,
    set_status_message,
)
from storage.lifecycle.records import (
    Applied,
    GaveUp,
    LimitReached,
    Limits,
    ModelView,
    NewModel,
    OrderView,
    OutboxItem,
)

__all__ = [
    "NOTICE_KIND",
    "AgentEvent",
    "Applied",
    "GaveUp",
    "LimitReached",
    "Limits",
    "ModelView",
    "NewModel",
    "OrderView",
    "OutboxItem",
    "apply_event",
    "cancel_order",
    "claim_outbox",
    "create_order",
    "delete_images",
    "delete_member_data",
    "delete_model",
    "fail_order",
    "fail_stuck_order",
    "failing_count",
    "forged_reason",
    "forget_member",
    "get_order",
    "give_up_outbox",
    "image_keys",
    "job_id_of",
    "list_models",
    "list_orders",
    "mark_outbox_sent",
    "mark_queued",
    "member_data",
    "new_subject_token",
    "note_job_resent",
    "pending_outbox",
    "precheck_order",
    "queue_position",
    "quiet_orders",
    "record_usage",
    "set_status_message",
    "still_quiet",
]
