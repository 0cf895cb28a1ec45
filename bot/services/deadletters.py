"""/admin deadletters: list and redrive dead letters, per server (blocking; through bot.run_blocking).

A dead letter belongs to the server of the order its body names. A server's admins see and redrive only their
server's; bot operators (BOT_OWNER_IDS) see all, bodies that name no order included. A dead letter whose order
is final (cancelled, failed, delivered) is never redriven: that would resurrect a job nobody wants any more.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.backends import Backends
from bot.embeds import clip
from bot.errors import NotFound, Refused
from bot.services.reconcile import ids_in_body
from cloud.queues import JobQueue
from storage import FINAL_STATUSES, lifecycle
from storage.lifecycle import OrderView

SCAN_LIMIT = 1000


@dataclass(frozen=True)
class DeadLetterView:
    queue: str  # train | render | events
    message_id: str
    reason: str | None
    sent_at: float | None
    order_id: str | None
    order_status: str | None  # None: the order is unknown (or the body names none)
    guild_id: str | None


def _queues(b: Backends) -> list[tuple[str, JobQueue]]:
    return [("train", b.queues.train), ("render", b.queues.render), ("events", b.queues.events)]


def list_dead_letters(b: Backends, guild_id: int | None, *, everyone: bool) -> list[DeadLetterView]:
    """The dead letters this caller may see, oldest first per queue."""
    letters = [
        (name, letter)
        for name, queue in _queues(b)
        if queue.dead_letter_depth()
        for letter in queue.dead_letters(limit=SCAN_LIMIT)
    ]
    known: dict[str, OrderView] = {}
    for _, letter in letters:
        order_id, _job = ids_in_body(letter.body)
        if order_id and order_id not in known:
            order = lifecycle.get_order(b.engine, order_id)
            if order is not None:
                known[order_id] = order
    views = []
    for name, letter in letters:
        order_id, _job = ids_in_body(letter.body)
        order = known.get(order_id or "")
        views.append(
            DeadLetterView(
                name,
                letter.message_id,
                letter.reason,
                letter.sent_at,
                order_id,
                order.status if order else None,
                order.guild_id if order else None,
            )
        )
    if everyone:
        return views
    return [v for v in views if v.guild_id is not None and v.guild_id == str(guild_id)]


def redrive_dead_letter(
    b: Backends, message_id: str, guild_id: int | None, *, everyone: bool
) -> DeadLetterView:
    """Move one dead letter back to its queue; NotFound / Refused with the reason otherwise."""
    view = next(
        (v for v in list_dead_letters(b, guild_id, everyone=everyone) if v.message_id == message_id), None
    )
    if view is None:
        where = "" if everyone else " for this server"
        raise NotFound(f"No dead letter `{clip(message_id, 80)}`{where} (see /admin deadletters list).")
    if view.order_status is None:
        raise Refused("That message belongs to no known order: redriving it would only dead-letter it again.")
    if view.order_status in FINAL_STATUSES:
        raise Refused(f"Order `{view.order_id}` is {view.order_status}: its job is not sent again.")
    queue = dict(_queues(b))[view.queue]
    if not queue.redrive(message_id):
        raise NotFound("That dead letter is gone already (redriven or expired meanwhile).")
    return view
