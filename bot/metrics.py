"""Prometheus metrics of the bot (served on /metrics by the HTTP side)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

COMMANDS = Counter("photogen_bot_commands_total", "Slash commands and button clicks handled", ["command"])
COMMAND_REFUSED = Counter(
    "photogen_bot_commands_refused_total", "Commands refused with a user-facing reason", ["kind"]
)
COMMAND_ERRORS = Counter("photogen_bot_command_errors_total", "Commands that failed with an unexpected error")
EVENTS_APPLIED = Counter("photogen_bot_events_applied_total", "Agent events applied to orders", ["kind"])
EVENTS_DUPLICATE = Counter("photogen_bot_events_duplicate_total", "Agent events seen before (no-op)")
DELIVERIES = Counter("photogen_bot_deliveries_total", "Outbox posts made to Discord", ["kind"])
DELIVERY_FAILURES = Counter(
    "photogen_bot_delivery_failures_total", "Outbox posts that failed and will be retried"
)
DELIVERIES_GIVEN_UP = Counter(
    "photogen_bot_deliveries_given_up_total",
    "Outbox posts given up after DELIVERY_MAX_ATTEMPTS (member told)",
)
EVENTS_FORGED = Counter(
    "photogen_bot_events_forged_total", "Agent events dropped: a job or blob key that is not the order's"
)
ORDERS_RECONCILED = Counter(
    "photogen_bot_orders_reconciled_total",
    "Orders found without a live job: sent again or failed",
    ["action"],
)
OUTBOX_PENDING = Gauge("photogen_bot_outbox_pending", "Outbox rows not yet posted")
LOOP_LAG = Histogram(
    "photogen_bot_loop_lag_seconds",
    "Event-loop lag measured by a sleeping probe",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
