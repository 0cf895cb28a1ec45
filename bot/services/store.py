"""The bot's use of the order store: each function is one short transaction (or read) on storage's API and
returns plain records. Blocking: called through bot.run_blocking, never on the event loop."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import select

from bot import costs, metrics
from bot.backends import Backends
from bot.checks import GuildRules
from bot.errors import Busy, NotAllowed
from bot.services import likeness
from bot.services.event_checks import forged_reason
from bot.services.records import ModelView, OrderView, OutboxItem
from cloud.messages import Event
from storage import FINAL_STATUSES, Delivery, Order, orders, purge, read_session, standing, transaction
from storage import TrainedModel as ModelRow
from storage.models import now

log = logging.getLogger(__name__)

DAY_S = 86400.0
AGENT_FRESH_S = 600.0


@dataclass(frozen=True)
class Limits:
    max_concurrent: int
    daily_quota: int
    starting_credits: int


@dataclass(frozen=True)
class NewModel:
    id: str
    name: str
    class_word: str
    subject_token: str
    base_model: str
    lora_key: str


@dataclass(frozen=True)
class Applied:
    duplicate: bool  # seen before: nothing changed
    order_id: str | None  # the order whose status message needs an edit (None: unknown order or foreign job)
    final: bool  # the order reached a final state: edit now, not throttled
    outbox: bool  # a post was queued in the outbox


def _order_view(o: Order) -> OrderView:
    return OrderView(
        id=o.id,
        user_id=o.user_id,
        guild_id=o.guild_id,
        channel_id=o.channel_id,
        kind=o.kind,
        status=o.status,
        model_id=o.model_id,
        params=dict(o.params or {}),
        status_message_id=o.status_message_id,
        credits_charged=o.credits_charged,
        step=o.progress_step,
        total=o.progress_total,
        eta_s=o.progress_eta_s,
        preview_key=o.preview_key,
        notice=o.notice,
        error_message=o.error_message,
        created_ts=o.created_at,
    )


def _model_view(m: ModelRow) -> ModelView:
    return ModelView(
        m.id,
        m.user_id,
        m.name,
        m.class_word,
        m.subject_token,
        m.base_model,
        m.lora_key,
        m.status,
        m.created_at,
    )


# --- members and guilds --------------------------------------------------------------------------------------


def guild_rules(b: Backends, guild_id: int) -> GuildRules:
    with read_session(b.engine) as s:
        g = orders.get_guild_settings(s, guild_id)
        return GuildRules(
            guild_id=int(guild_id),
            admin_role_id=int(g.admin_role_id) if g.admin_role_id else None,
            allowed_channel_ids=frozenset(int(c) for c in g.allowed_channel_ids),
            blocked_words=tuple(g.blocked_words),
            daily_quota=g.daily_quota,
            max_concurrent_orders=g.max_concurrent_orders,
            paused=g.paused,
            admin_log_channel_id=int(g.admin_log_channel_id) if g.admin_log_channel_id else None,
        )


def update_guild(b: Backends, guild_id: int | None, **changes: Any) -> None:
    with transaction(b.engine) as s:
        orders.update_guild_settings(s, guild_id, **changes)


# A member's standing is per server (storage.standing); guild_id standing.ALL_GUILDS is a bot owner's ban.


def ban_reason(b: Backends, guild_id: int | str | None, user_id: int) -> str | None:
    """None when the member may use the bot in that server; the ban reason ('' if none given) when banned
    there or everywhere."""
    with read_session(b.engine) as s:
        return standing.ban_reason(s, guild_id, user_id)


def set_banned(b: Backends, guild_id: int | str | None, user_id: int, banned: bool, reason: str) -> None:
    """Never touches credits: a member banned before ever ordering still gets the starting credits later."""
    with transaction(b.engine) as s:
        standing.set_ban(s, guild_id, user_id, banned, reason or None)


def grant_credits(b: Backends, guild_id: int | None, user_id: int, amount: int) -> int:
    with transaction(b.engine) as s:
        return standing.grant(s, guild_id, user_id, amount)


def set_quota(b: Backends, guild_id: int | None, user_id: int, daily: int | None) -> None:
    with transaction(b.engine) as s:
        standing.set_quota(s, guild_id, user_id, daily)


def audit(b: Backends, guild_id: int | None, actor_id: int, action: str, target: str, detail: str) -> None:
    with transaction(b.engine) as s:
        orders.audit(
            s, action=action, guild_id=guild_id, actor_id=actor_id, target=target, detail=detail or None
        )


# --- orders ----------------------------------------------------------------------------------------------------


def _check_limits(s: Any, guild_id: int | None, user_id: int, limits: Limits, cost: int) -> None:
    """The member's limits in this server. Before their first order here, the starting credits count as theirs
    (create_order grants them, once ever)."""
    if standing.ban_reason(s, guild_id, user_id) is not None:
        raise NotAllowed("You are banned from using Photogen here.")
    row = standing.get_standing(s, guild_id, user_id)
    credits = row.credits if row else 0
    if row is None or not row.starting_credits_granted:
        credits += limits.starting_credits
    user_quota = row.daily_quota if row else None
    if orders.active_order_count(s, user_id) >= limits.max_concurrent:
        raise Busy(
            f"You already have {limits.max_concurrent} order(s) in progress. Wait for one to finish "
            "(see /orders) or cancel one with /cancel."
        )
    quota = user_quota or limits.daily_quota
    if standing.orders_since(s, guild_id, user_id, now() - DAY_S) >= quota:
        raise Busy(f"You reached your quota of {quota} orders a day. Try again tomorrow.")
    if credits < cost:
        raise Busy(f"This costs {cost} credit(s) and you have {credits}. Ask an admin for more.")


def precheck_order(b: Backends, guild_id: int | None, user_id: int, limits: Limits, cost: int) -> None:
    """The same limits, read-only, before expensive work (a /train's downloads and face checks); create_order
    checks again atomically."""
    with read_session(b.engine) as s:
        _check_limits(s, guild_id, user_id, limits, cost)


def create_order(
    b: Backends,
    *,
    order_id: str,
    job_id: str,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    kind: str,
    cost: int,
    params: dict[str, Any],
    payload: str,
    limits: Limits,
    model: NewModel | None = None,
    model_id: str | None = None,
) -> int:
    """Check the limits, charge and write order + job (+ model) in ONE transaction: two commands racing for the
    last credit or the last open slot cannot both pass. Returns the credits left."""
    import json

    with transaction(b.engine) as s:
        _check_limits(s, guild_id, user_id, limits, cost)
        orders.create_order(
            s,
            order_id=order_id,
            user_id=user_id,
            kind=kind,
            guild_id=guild_id,
            channel_id=channel_id,
            model_id=model.id if model else model_id,
            prompt=params.get("prompt"),
            params=params,
            charge=cost,
            starting_credits=limits.starting_credits,
        )
        orders.add_job(s, order_id, kind, json.loads(payload), job_id=job_id)
        if model is not None:
            orders.add_model(
                s,
                user_id=user_id,
                name=model.name,
                class_word=model.class_word,
                subject_token=model.subject_token,
                base_model=model.base_model,
                order_id=order_id,
                model_id=model.id,
            )
        return standing.credits_of(s, guild_id, user_id)


def fail_order(b: Backends, order_id: str, code: str, message: str) -> None:
    with transaction(b.engine) as s:
        if orders.mark_failed(s, order_id, code, message):
            orders.refund_order(s, order_id)
        order = orders.get_order(s, order_id)
        if order is not None and order.kind == "train" and order.model_id:
            orders.mark_model_failed(s, order.model_id)


def mark_queued(b: Backends, order_id: str) -> None:
    with transaction(b.engine) as s:
        orders.mark_queued(s, order_id)


def queue_position(b: Backends, order_id: str) -> tuple[int, float | None]:
    """(position, ETA seconds). The ETA is the position times the recent average duration of that kind."""
    with read_session(b.engine) as s:
        position = orders.queue_position(s, order_id) or 0
        order = orders.get_order(s, order_id)
        if order is None:
            return 0, None
        recent = s.exec(
            select(Order.updated_at - Order.created_at)
            .where(Order.kind == order.kind, Order.status == "delivered")
            .order_by(Order.updated_at.desc())  # type: ignore[attr-defined]
            .limit(20)
        ).all()
        if not recent:
            return position, None
        avg = sum(recent) / len(recent)
        return position, max(position, 1) * avg


def set_status_message(b: Backends, order_id: str, message_id: int) -> None:
    with transaction(b.engine) as s:
        orders.set_status_message(s, order_id, message_id)


def get_order(b: Backends, order_id: str) -> OrderView | None:
    with read_session(b.engine) as s:
        o = orders.get_order(s, order_id)
        return _order_view(o) if o else None


def list_orders(b: Backends, user_id: int, *, limit: int, active_only: bool) -> list[OrderView]:
    with read_session(b.engine) as s:
        return [
            _order_view(o) for o in orders.orders_of_user(s, user_id, limit=limit, active_only=active_only)
        ]


def cancel_order(b: Backends, order_id: str, *, by: str) -> int | None:
    """Cancel and refund; None when the order had already reached a final state."""
    with transaction(b.engine) as s:
        if not orders.mark_cancelled(s, order_id, f"cancelled by {by}"):
            return None
        refunded = orders.refund_order(s, order_id)
        order = orders.get_order(s, order_id)
        if order is not None and order.kind == "train" and order.model_id:
            orders.mark_model_failed(s, order.model_id)
        return refunded


def image_keys(b: Backends, order_id: str) -> list[str]:
    with read_session(b.engine) as s:
        return [i.blob_key for i in orders.images_of_order(s, order_id)]


def delete_images(b: Backends, order_id: str) -> int:
    with transaction(b.engine) as s:
        rows = orders.images_of_order(s, order_id)
        for row in rows:
            s.delete(row)
        return len(rows)


def job_id_of(b: Backends, order_id: str) -> str | None:
    with read_session(b.engine) as s:
        jobs = orders.jobs_of_order(s, order_id)
        return jobs[0].id if jobs else None


# --- models -----------------------------------------------------------------------------------------------------


def list_models(b: Backends, user_id: int) -> list[ModelView]:
    with read_session(b.engine) as s:
        return [_model_view(m) for m in orders.models_of_user(s, user_id)]


def delete_model(b: Backends, user_id: int, model_id: str) -> str | None:
    with transaction(b.engine) as s:
        model = orders.get_model(s, model_id)
        if model is None or model.user_id != str(user_id):
            return None
        name = model.name
        orders.delete_model(s, model_id)
        return name


def member_data(b: Backends, user_id: int, guild_id: int | str) -> purge.MemberData:
    with read_session(b.engine) as s:
        return purge.member_data(s, user_id, guild_id)


def delete_member_data(b: Backends, user_id: int, guild_id: int | str) -> dict[str, int]:
    """The member's rows in one server (their standing and member row stay)."""
    with transaction(b.engine) as s:
        return _receipt(purge.delete_member_data(s, user_id, guild_id))


def delete_user(b: Backends, user_id: int) -> dict[str, int]:
    with transaction(b.engine) as s:
        return _receipt(orders.delete_user_data(s, user_id))


def _receipt(r: orders.DeletionReceipt) -> dict[str, int]:
    return {
        "orders": r.orders,
        "models": r.models,
        "pictures": r.images,
        "records": r.jobs + r.deliveries + r.events + r.user,
    }


# --- status figures -----------------------------------------------------------------------------------------


def agents_online(b: Backends) -> int:
    cutoff = time.time() - AGENT_FRESH_S
    return sum(1 for seen in b.agents_seen.values() if seen >= cutoff)


# --- events and the outbox --------------------------------------------------------------------------------------

_STARTED = {"train": "training", "render": "rendering"}


def apply_event(b: Backends, event: Event) -> Applied:
    """One agent event → the order, exactly once (storage records the event id in the same transaction)."""
    if event.agent_id:
        b.agents_seen[event.agent_id[:128]] = time.time()
    with transaction(b.engine) as s:
        order = orders.get_order(s, event.order_id)
        jobs = orders.jobs_of_order(s, event.order_id) if order else []
        job_ids = [j.id for j in jobs]
        forged = None if order is None else forged_reason(event, order.user_id, order.kind, job_ids)
        if order is None or forged is not None:
            # Unknown order (forgotten member, cancelled and purged) or an event naming someone else's job or
            # blobs: record the id so a redelivery is a no-op, change nothing, post nothing.
            if forged is not None:
                log.warning("dropped event %s for order %s: %s", event.event_id, event.order_id, forged)
                metrics.EVENTS_FORGED.inc()
            orders.claim_event(s, event.event_id, None)
            return Applied(duplicate=False, order_id=None, final=False, outbox=False)
        base: dict[str, Any] = {"channel_id": order.channel_id, "user_id": order.user_id}
        kw: dict[str, Any] = {}
        if event.progress is not None:
            kw.update(
                step=event.progress.step,
                total=event.progress.total,
                eta_s=event.progress.eta_s,
                preview_key=event.progress.preview_key,
            )
        deliveries: list[orders.NewDelivery] = []
        images: list[orders.NewImage] = []
        render_keys = [k for k in event.output_keys if "/renders/" in k]
        if event.kind == "preempted":
            kw["notice"] = (
                event.error.message if event.error else "Paused: the GPU was reclaimed; resuming soon."
            )
        elif event.kind != "checkpoint":
            kw["notice"] = None  # the work goes on (or ended): the pause is over
        # The agent's safety verdicts, and the guild whose policy the post applies (bot/services/safety.py).
        base.update(guild_id=order.guild_id, safety=[v.model_dump() for v in event.safety])
        if event.kind == "started":
            kw["status"] = _STARTED[order.kind]
        elif event.kind == "done":
            if order.kind == "render":
                kw["status"] = "delivered"
                images = [
                    orders.NewImage(
                        blob_key=k,
                        index=i,
                        job_id=event.job_id,
                        seed=order.params.get("seed", 0) + i,
                        prompt=order.prompt,
                        **likeness.image_fields(event, i),
                    )
                    for i, k in enumerate(render_keys)
                ]
                deliveries = [
                    orders.NewDelivery(
                        "render_result",
                        {
                            **base,
                            "prompt": order.prompt or "",
                            "image_keys": render_keys,
                            "likeness": likeness.payload(event),
                            "mode": order.params.get("mode", "txt2img"),
                        },
                    )
                ]
                advice = likeness.advice(s, order, event, b.settings.likeness_advice_after)
                if advice is not None:
                    deliveries.append(advice)
            else:
                kw["status"] = "trained"
                deliveries = [
                    orders.NewDelivery(
                        "train_result",
                        {
                            **base,
                            "model_name": order.params.get("name", ""),
                            "image_keys": render_keys,
                            "likeness": likeness.payload(event),
                        },
                    )
                ]
        elif event.kind == "failed":
            message = event.error.message if event.error else "The job failed."
            kw.update(
                status="failed",
                error_code=event.error.code if event.error else "failed",
                error_message=message,
            )
            deliveries = [
                orders.NewDelivery(
                    "failed",
                    {**base, "message": message, "refunded": order.credits_charged - order.credits_refunded},
                )
            ]
        outcome = orders.apply_event(
            s, event.event_id, event.order_id, deliveries=deliveries, images=images, **kw
        )
        if not outcome.applied:
            return Applied(duplicate=True, order_id=event.order_id, final=False, outbox=False)
        # GPU time and its price, once per event id, committed with the event (bot/costs.py).
        costs.record_event_cost(s, event, b.settings)
        if outcome.moved and order.kind == "train" and order.model_id:
            if kw.get("status") == "trained":
                lora = next((k for k in event.output_keys if k.endswith("lora.safetensors")), None)
                from storage import keys

                orders.mark_model_ready(
                    s, order.model_id, lora or keys.model_key(order.user_id, order.model_id)
                )
                # A trained model is the train order's delivery: the order is done.
                orders.mark_delivered(s, event.order_id)
            elif kw.get("status") == "failed":
                orders.mark_model_failed(s, order.model_id)
        final = orders.get_order(s, event.order_id)
        return Applied(
            duplicate=False,
            order_id=event.order_id,
            final=bool(final and final.status in FINAL_STATUSES),
            outbox=bool(deliveries) and outcome.moved,
        )


def pending_outbox(b: Backends, limit: int = 50) -> list[OutboxItem]:
    with read_session(b.engine) as s:
        return [
            OutboxItem(d.id, d.order_id, d.kind, dict(d.payload), d.attempts)
            for d in orders.pending_deliveries(s, limit)
        ]


def claim_outbox(b: Backends, outbox_id: str) -> None:
    """Count the attempt before posting: a row that keeps failing shows it in `attempts`."""
    with transaction(b.engine) as s:
        s.execute(
            update(Delivery)
            .where(Delivery.id == outbox_id)
            .values(attempts=Delivery.attempts + 1, updated_at=now())
        )


def mark_outbox_sent(b: Backends, outbox_id: str, message_id: int | None) -> None:
    with transaction(b.engine) as s:
        orders.mark_sent(s, outbox_id, message_id if message_id is not None else "undeliverable")


def new_subject_token(b: Backends) -> str:
    """A rare identifier no model in training or ready uses (storage/tokens.py)."""
    from storage.tokens import new_subject_token as pick
    from storage.tokens import tokens_in_use

    with read_session(b.engine) as s:
        return pick(tokens_in_use(s))
