"""Group pictures (/group): who may be pictured, the consent of every member, charging the caller once all
accepted, ending an order on refusal, timeout or withdrawal, and follow-ups that keep the consent (what it
means for the members pictured afterwards: bot/services/group_privacy.py).

The order row exists from the request on (``created``, nothing charged, no job): the caller sees it in /orders
and may cancel it, and nothing can render it, because the job is written only by ``start_if_ready``, in the
transaction that finds every consent row accepted and charges the caller. Blocking: called through
bot.run_blocking. Consent rows: storage/consent.py."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from bot import presets
from bot.backends import Backends
from bot.checks import GuildRules
from bot.errors import NotAllowed, NotFound, Refused
from bot.group_presets import DEFAULT_LAYOUT, GROUP_PRESETS
from bot.services import deletion
from bot.services.member_orders import _enqueue, _limits, _limits_refused, refuse_blocked_words, result_title
from bot.services.records import Placed
from cloud.messages import GroupMember, RenderJob, encode, new_id
from storage import (
    InsufficientCredits,
    consent,
    credits,
    lifecycle,
    order_store,
    read_session,
    standing,
    tombstones,
    transaction,
)
from storage.models import ACTIVE_STATUSES, TrainedModel

MAX_PEOPLE = 4
# How a group order ends when it cannot go on (error codes; their messages are written for the channel).
END_CODES = ("refused", "consent_timeout", "revoked", "cannot_start", "forgotten")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Picked:
    """A member the caller named, as Discord resolved them."""

    user_id: int
    is_bot: bool
    in_server: bool


@dataclass(frozen=True)
class Requested:
    order_id: str
    asked: list[int]  # the members to ask, left to right
    expires_at: float
    cost: int
    title: str


@dataclass(frozen=True)
class Outcome:
    """What an answer, a withdrawal or a timeout did to the order."""

    order_id: str
    status: str  # the member's consent afterwards, or the order's end
    changed: bool
    ended: bool = False  # the order ended (refused, expired, withdrawn, cannot start)
    placed: Placed | None = None  # every member accepted: the job is queued
    refunded: int = 0


def mention(user_id: object) -> str:
    return f"<@{int(str(user_id))}>"


# --- who may be pictured ------------------------------------------------------------------------------------


def check_picked(caller_id: int, picked: list[Picked]) -> None:
    """What Discord tells us: not the caller, no bot, members of this server, each once, 2-4 people."""
    if not picked:
        raise Refused("Name at least one other member: a group picture has 2 to 4 people, you included.")
    seen: set[int] = set()
    for p in picked:
        if p.user_id == caller_id:
            raise Refused("You are in the picture already: name the other members only.")
        if p.is_bot:
            raise Refused(f"{mention(p.user_id)} is a bot and cannot be in a group picture.")
        if not p.in_server:
            raise Refused(f"{mention(p.user_id)} is not a member of this server.")
        if p.user_id in seen:
            raise Refused(f"{mention(p.user_id)} is named twice.")
        seen.add(p.user_id)
    if len(picked) + 1 > MAX_PEOPLE:
        raise Refused(f"A group picture has at most {MAX_PEOPLE} people, you included.")


def _ready_models(s: Any, user_id: object) -> list[TrainedModel]:
    return [m for m in order_store.models_of_user(s, user_id, ready_only=True) if m.lora_key]


def _caller_model(s: Any, user_id: int, model_id: str | None) -> TrainedModel:
    models = _ready_models(s, user_id)
    if not models:
        raise Refused("You have no trained model yet: start with /train.")
    if model_id is None:
        return models[0]
    for m in models:
        if m.id == model_id or m.name.casefold() == model_id.casefold():
            return m
    raise NotFound("That is not one of your trained models (see /models list).")


def _member_model(b: Backends, s: Any, guild_id: int, user_id: int, base_model: str) -> TrainedModel:
    """The member's newest ready model on the caller's base, or a refusal that says only what is needed."""
    who = mention(user_id)
    if standing.ban_reason(s, guild_id, user_id) is not None:
        raise Refused(f"{who} cannot take part in Photogen pictures in this server.")
    if tombstones.sweep_pending(b.blobs, f"member-{user_id}"):
        raise Refused(f"{who} cannot be asked right now.")
    if not consent.takes_requests(s, guild_id, user_id):
        raise Refused(f"{who} has turned off group picture requests.")
    models = _ready_models(s, user_id)
    if not models:
        raise Refused(f"{who} has no trained model, so they cannot be pictured.")
    same = [m for m in models if m.base_model == base_model]
    if not same:
        raise Refused(
            f"{who}'s model is on a different base model than yours: everyone in a group picture needs a "
            "model on the same base."
        )
    return same[0]


def cost_of(b: Backends, people: int, count: int) -> int:
    """A group picture costs a render per picture per person pictured."""
    return b.settings.render_credit_cost * count * people


# --- the request --------------------------------------------------------------------------------------------


def request_group(
    b: Backends,
    *,
    guild_id: int,
    channel_id: int | None,
    caller_id: int,
    others: list[int],
    model_id: str | None,
    preset_id: str | None,
    prompt: str | None,
    count: int,
    seed: int | None,
    rules: GuildRules,
) -> Requested:
    """Check everyone, then write the order (nothing charged, no job) and the consent rows in one transaction.
    Credits and limits are checked now, so nobody is asked for an order that could not be paid."""
    deletion.refuse_while_forgetting(b, caller_id)
    preset = GROUP_PRESETS.get(preset_id) if preset_id else None
    if preset_id and preset is None:
        raise Refused("Unknown group preset.")
    if preset is None and not prompt:
        raise Refused("Give a prompt or pick a group preset.")
    people = len(others) + 1
    words = prompt or (preset.title if preset else "")
    scene = preset.prompt.format(n=people) if preset else ""
    full_prompt = ", ".join(x for x in (scene, prompt or "") if x)[:1000]
    refuse_blocked_words(full_prompt, rules)
    width, height = presets.size_for(preset.aspect if preset else "3:2", b.settings.render_size)
    cost = cost_of(b, people, count)
    expires_at = time.time() + b.settings.group_consent_timeout_s
    with read_session(b.engine) as s:
        mine = _caller_model(s, caller_id, model_id)
        chosen = [(caller_id, mine.id)] + [
            (uid, _member_model(b, s, guild_id, uid, mine.base_model).id) for uid in others
        ]
    with _limits_refused():
        lifecycle.precheck_order(b.engine, guild_id, caller_id, _limits(b, rules), cost)
    title = result_title(f"Group picture: {words}")
    params = {
        "title": title,
        "words": result_title(words),
        "style": preset.title if preset else None,
        "model_name": mine.name,
        "prompt": full_prompt,
        "negative_prompt": "",
        "count": count,
        "width": width,
        "height": height,
        "seed": seed if seed is not None else secrets.randbelow(MAX_SEED),
        "guidance": 7.0,
        "mode": "group",
        "layout": preset.layout if preset else DEFAULT_LAYOUT,
        "face_detail": True,
        "group": {"members": [str(uid) for uid, _ in chosen], "people": len(chosen), "cost": cost},
    }
    order_id = new_id()
    with transaction(b.engine) as s:
        order_store.create_order(
            s,
            order_id=order_id,
            user_id=caller_id,
            kind="render",
            guild_id=guild_id,
            channel_id=channel_id,
            model_id=mine.id,
            prompt=full_prompt,
            params=params,
            charge=0,
            starting_credits=b.settings.starting_credits,
        )
        consent.record_request(
            s, order_id, guild_id=guild_id, caller_id=caller_id, members=chosen, expires_at=expires_at
        )
    return Requested(order_id, others, expires_at, cost, title)


def set_request_message(b: Backends, order_id: str, user_id: int, message_id: int) -> None:
    with transaction(b.engine) as s:
        consent.set_request_message(s, order_id, user_id, message_id)


@dataclass(frozen=True)
class RequestMessage:
    user_id: str
    status: str
    channel_id: str | None
    message_id: str | None


def request_messages(b: Backends, order_id: str) -> list[RequestMessage]:
    """The Accept/Refuse messages of an order (to edit once answered or ended)."""
    with read_session(b.engine) as s:
        order = order_store.get_order(s, order_id)
        channel = order.channel_id if order else None
        return [
            RequestMessage(r.user_id, r.status, channel, r.request_message_id)
            for r in consent.consents(s, order_id)
            if r.request_message_id
        ]


# --- answers, start, end ------------------------------------------------------------------------------------


def answer_request(b: Backends, order_id: str, user_id: int, accept: bool) -> Outcome:
    """An asked member's click. Accept by the last one starts the order; a refusal ends it."""
    order = lifecycle.get_order(b.engine, order_id)
    if order is not None and order.status not in ACTIVE_STATUSES and str(user_id) in pictured(b, order_id):
        raise Refused("This request has ended.")
    with transaction(b.engine) as s:
        got = consent.answer(s, order_id, user_id, accept)
    if got.status is None:
        raise NotAllowed("This request is for the member it names, not for you.")
    if not got.changed:
        return Outcome(order_id, got.status, False)
    if not accept:
        refunded = end_order(
            b,
            order_id,
            "refused",
            "Not everyone agreed to be in this picture: nothing was rendered or charged.",
        )
        return Outcome(order_id, "refused", True, ended=True, refunded=refunded)
    if got.all_accepted:
        placed, ended = start_if_ready(b, order_id)
        return Outcome(order_id, "accepted", True, ended=ended, placed=placed)
    return Outcome(order_id, "accepted", True)


def start_if_ready(b: Backends, order_id: str) -> tuple[Placed | None, bool]:
    """Every consent accepted: check each member's model once more, charge the caller and write the job, in
    one transaction; then queue it. (None, True) when the order had to end instead (a model gone, no
    credits)."""
    problem: str | None = None
    with transaction(b.engine) as s:
        order = order_store.get_order(s, order_id)
        if order is None or order.status != "created" or order_store.jobs_of_order(s, order_id):
            return None, False
        if not consent.all_accepted(s, order_id):
            return None, False
        members: list[GroupMember] = []
        for row in consent.consents(s, order_id):
            model = order_store.get_model(s, row.model_id)
            if model is None or model.status != "ready" or model.user_id != row.user_id or not model.lora_key:
                problem = (
                    f"{mention(row.user_id)}'s model is no longer available: nothing was rendered or charged."
                )
                break
            if standing.ban_reason(s, order.guild_id, row.user_id) is not None:
                # Shown on the public status message: which member, and why, is nobody else's business.
                problem = "A member can no longer be pictured here: nothing was rendered or charged."
                break
            members.append(
                GroupMember(
                    user_id=row.user_id,
                    model_id=model.id,
                    model_key=model.lora_key,
                    subject=f"{model.subject_token} {model.class_word}",
                )
            )
        if problem is None:
            p, cost = order.params, int(order.params["group"]["cost"])
            job = RenderJob(
                job_id=new_id(),
                order_id=order_id,
                user_id=order.user_id,
                base_model=_base_of(s, order),
                prompt=p["prompt"],
                negative_prompt=p.get("negative_prompt", ""),
                seed=p["seed"],
                count=p["count"],
                width=p["width"],
                height=p["height"],
                steps=b.settings.render_steps,
                guidance=p.get("guidance", 7.0),
                mode="group",
                members=members,
                layout=p["layout"],
                source_key=p.get("source_key"),
                face_detail=bool(p.get("face_detail")) and b.settings.render_face_detail,
                issued_at=time.time(),
            )
            try:
                credits_left = credits.charge(s, order, cost)  # the ledger entry, with the job
            except InsufficientCredits:
                problem = (
                    f"Everyone agreed, but the caller no longer has the {cost} credit(s) this picture costs: "
                    "nothing was rendered or charged."
                )
            else:
                order_store.add_job(s, order_id, "render", job.model_dump(mode="json"), job_id=job.job_id)
    if problem is not None:
        end_order(b, order_id, "cannot_start", problem)
        return None, True
    placed = _enqueue(b, order_id, job.job_id, credits_left, lambda: b.queues.render.send(encode(job)))
    return placed, False


def _base_of(s: Any, order: Any) -> str:
    model = order_store.get_model(s, order.model_id) if order.model_id else None
    return model.base_model if model else "unknown"


def end_order(b: Backends, order_id: str, code: str, message: str) -> int:
    """End a group order that cannot go on; returns the credits refunded (once: storage.order_store.refund_order).
    Queued or rendering: the cancel path, so the agent stops and uploads nothing (tombstone); before that: it
    fails (nothing was charged)."""
    order = lifecycle.get_order(b.engine, order_id)
    if order is None or order.status not in ACTIVE_STATUSES:
        return 0
    if lifecycle.job_id_of(b.engine, order_id) is None:
        with transaction(b.engine) as s:
            if order_store.mark_failed(s, order_id, code, message):
                return order_store.refund_order(s, order_id)
        return 0
    refunded = lifecycle.cancel_order(b.engine, order_id, by=code)
    if refunded is None:
        return 0
    with transaction(b.engine) as s:  # the member's words, not "cancelled by …"
        row = order_store.get_order(s, order_id)
        if row is not None:
            row.error_code, row.error_message = code, message
            s.add(row)
    deletion.order_cancelled(b, order)
    return refunded


def withdraw(b: Backends, order_id: str, user_id: int) -> Outcome:
    """A member withdraws their consent before the picture is delivered: the order ends and is refunded."""
    with transaction(b.engine) as s:
        rows = {r.user_id: r for r in consent.consents(s, order_id)}
        if str(user_id) not in rows:
            raise NotAllowed("This request is for the member it names, not for you.")
        order = order_store.get_order(s, order_id)
        if order is None or order.status not in ACTIVE_STATUSES:
            raise Refused("That picture is finished: use 🗑 on it to delete it.")
        if not consent.revoke(s, order_id, user_id):
            return Outcome(order_id, rows[str(user_id)].status, False)
    refunded = end_order(
        b,
        order_id,
        "revoked",
        "A member withdrew their consent: nothing more is rendered, and credits were refunded.",
    )
    return Outcome(order_id, "revoked", True, ended=True, refunded=refunded)


def end_reason(b: Backends, order_id: str) -> str | None:
    """Why the order ended, in words for the channel (None while it goes on): our own for the group's ends,
    not a plain cancel's record ("cancelled by <id>")."""
    with read_session(b.engine) as s:
        order = order_store.get_order(s, order_id)
        if order is None or order.status in ACTIVE_STATUSES or order.status == "delivered":
            return None
        if order.error_code in END_CODES and order.error_message:
            return order.error_message
        return "it was cancelled." if order.status == "cancelled" else "it failed."


def expire_due(b: Backends) -> list[str]:
    """The periodic part: every request past its time ends its order (durable: the rows hold the deadline)."""
    with transaction(b.engine) as s:
        due = consent.expire_due(s)
    for order_id in due:
        end_order(
            b, order_id, "consent_timeout", "Not everyone answered in time: nothing was rendered or charged."
        )
    return due


# --- after delivery -----------------------------------------------------------------------------------------


def pictured(b: Backends, order_id: str) -> list[str]:
    """The members pictured (user ids, left to right); empty for an order that is not a group picture."""
    with read_session(b.engine) as s:
        return [r.user_id for r in consent.consents(s, order_id)]


def place_followup(
    b: Backends,
    parent_id: str,
    n: int,
    action: str,
    *,
    user_id: int,
    channel_id: int | None,
    rules: GuildRules,
) -> Requested:
    """🔄 (new seed) or V (variations of picture n) of a group picture, by its caller: the members' consent to
    the parent is carried forward (none withdrew, none turned requests off, none banned), then started."""
    parent = lifecycle.get_order(b.engine, parent_id)
    if parent is None or parent.user_id != str(user_id):
        raise NotAllowed("Only the member who made this group picture can make more of it.")
    if parent.status != "delivered":
        raise Refused("Those pictures are not finished yet.")
    p = dict(parent.params)
    refuse_blocked_words(p["prompt"], rules)
    guild_id = int(parent.guild_id) if parent.guild_id else 0
    with read_session(b.engine) as s:
        rows = consent.consents(s, parent_id)
        people = int(p["group"].get("people", len(p["group"]["members"])))
        # Everyone still there: nobody forgotten since.
        everyone = len(rows) == people and [r.user_id for r in rows] == list(p["group"]["members"])
        if not everyone or any(r.status != "accepted" for r in rows):
            raise Refused("Someone in this picture withdrew their consent: it cannot be made again.")
        for r in rows:
            if r.user_id == str(user_id):
                continue
            if standing.ban_reason(s, guild_id, r.user_id) is not None or not consent.takes_requests(
                s, guild_id, r.user_id
            ):
                raise Refused(f"{mention(r.user_id)} can no longer be asked into group pictures here.")
        chosen = [(r.user_id, r.model_id) for r in rows]
    if action == "var":
        image_keys = lifecycle.image_keys(b.engine, parent_id)
        if n >= len(image_keys) or not b.blobs.exists(image_keys[n]):
            raise NotFound(f"There is no picture {n + 1} in that result.")
        p.update(source_key=image_keys[n], title=result_title(f"Variations of picture {n + 1}: {p['words']}"))
    p.update(seed=secrets.randbelow(MAX_SEED), parent_order_id=parent_id)
    with _limits_refused():
        lifecycle.precheck_order(b.engine, guild_id, user_id, _limits(b, rules), int(p["group"]["cost"]))
    order_id = new_id()
    with transaction(b.engine) as s:
        order_store.create_order(
            s,
            order_id=order_id,
            user_id=user_id,
            kind="render",
            guild_id=parent.guild_id,
            channel_id=channel_id,
            model_id=parent.model_id,
            prompt=p["prompt"],
            params=p,
            charge=0,
            starting_credits=b.settings.starting_credits,
        )
        consent.record_request(
            s,
            order_id,
            guild_id=parent.guild_id,
            caller_id=user_id,
            members=chosen,
            expires_at=time.time(),
            carried_from=parent_id,
        )
    return Requested(order_id, [], time.time(), int(p["group"]["cost"]), p["title"])


def set_takes_requests(b: Backends, guild_id: int, user_id: int, takes: bool) -> None:
    with transaction(b.engine) as s:
        consent.set_takes_requests(s, guild_id, user_id, takes)
