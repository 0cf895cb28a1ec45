"""Credits as a ledger: every movement of a member's credits in a server is one appended CreditEntry, and the
balance is the sum of the member's entries there. This module is the only writer of those rows, and of an
order's mirrors of its own entries (``Order.credits_charged`` / ``credits_refunded``); nothing stores a balance.

Kinds: ``starting`` (a member's first order in a server, once ever), ``grant`` (an admin), ``opening`` (the
balance a member had when the ledger began: migration 0016), ``charge`` (an order's one charge, in the
transaction that writes the order or, for a group picture, its job), ``refund`` (what the order's charge took
and no refund gave back yet: in the transaction that fails or cancels it, so once), ``expiry``.

Expiry (CREDITS_EXPIRE_DAYS): credits are spent oldest grant first, and a refund gives back to the grants it
came from, so the unspent part of the grants older than the cutoff is ``old grants − (charged − refunded +
expired so far)``; that much expires. A second run finds nothing more: idempotent.

A re-roll that is not charged (the automatic likeness re-renders inside one job, docs/PHOTOS.md) writes no
entry at all: an order has at most one charge entry and one refund entry.

Like storage.order_store, the functions taking a Session never commit (the caller's ``storage.transaction``);
``expire_all`` and ``ledger`` take the Engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, case, func, insert, literal, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from storage import standing
from storage.db import read_session, transaction
from storage.models import GRANT_KINDS, CreditEntry, MemberStanding, Order, now

SYSTEM = "system"
DAY_S = 86400.0

# Why an order was refunded, in plain words, by the code that ended it (storage.lifecycle.cancel_order's ``by``
# or the order's error code); a member's or an admin's own id reads "cancelled by …".
_END_WORDS = {
    "failed": "the order failed",
    "cancelled": "the order was cancelled",
    "refused": "a member refused the group picture",
    "consent_timeout": "not everyone answered the group request in time",
    "revoked": "a member withdrew their consent",
    "cannot_start": "the group picture could not start",
    "forgotten": "a member's data was deleted",
    "model deletion": "its model was deleted",
    "admin purge": "an admin purged the member's data",
    "forget-me": "the member's data was deleted (/forget-me)",
}


@dataclass(frozen=True)
class CreditLine:
    kind: str
    amount: int
    order_id: str | None
    reason: str | None
    actor: str
    at: float


@dataclass(frozen=True)
class Ledger:
    balance: int
    lines: list[CreditLine]  # the newest first


def _checked(amount: int) -> int:
    from storage.order_store import _amount  # one rule for credit amounts (OrderStoreError)

    return _amount(amount)


def _member(guild_id: object | None, user_id: object) -> tuple[str, str]:
    return standing.guild_key(guild_id), str(user_id)


def _of(guild: str, user: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return col(CreditEntry.guild_id) == guild, col(CreditEntry.user_id) == user


def balance(session: Session, guild_id: object | None, user_id: object) -> int:
    """The member's credits in that server: the sum of their entries there."""
    total = session.execute(
        select(func.coalesce(func.sum(CreditEntry.amount), 0)).where(*_of(*_member(guild_id, user_id)))
    ).scalar_one()
    return int(total)


def _append(
    session: Session,
    guild_id: object | None,
    user_id: object,
    kind: str,
    amount: int,
    *,
    order_id: str | None = None,
    reason: str | None = None,
    actor: object = SYSTEM,
    at: float | None = None,
) -> None:
    guild, user = _member(guild_id, user_id)
    session.add(
        CreditEntry(
            guild_id=guild,
            user_id=user,
            kind=kind,
            amount=amount,
            order_id=order_id,
            reason=None if reason is None else reason[:200],
            actor=str(actor)[:32],
            at=now() if at is None else at,
        )
    )
    session.flush()


def grant_starting(session: Session, guild_id: object | None, user_id: object, amount: int) -> bool:
    """The starting credits, the first time a member orders in a server and never again (not after a ban, an
    unban, an admin purge or /forget-me: the mark is MemberStanding's). True when granted now."""
    amount = _checked(amount)
    guild, user = _member(guild_id, user_id)
    standing.ensure_standing(session, guild, user)
    result = session.execute(
        update(MemberStanding)
        .where(
            col(MemberStanding.guild_id) == guild,
            col(MemberStanding.user_id) == user,
            col(MemberStanding.starting_credits_granted).is_(False),
        )
        .values(starting_credits_granted=True, updated_at=now())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if amount:
        _append(session, guild, user, "starting", amount, reason="starting credits")
    return True


def grant(
    session: Session,
    guild_id: object | None,
    user_id: object,
    amount: int,
    *,
    actor: object,
    reason: str | None = None,
    at: float | None = None,
) -> int:
    """An admin's grant (``actor``: their id) of at least one credit. Returns the balance."""
    from storage.order_store import OrderStoreError

    if _checked(amount) == 0:
        raise OrderStoreError("a grant is at least 1 credit")
    standing.ensure_standing(session, guild_id, user_id)
    _append(session, guild_id, user_id, "grant", amount, reason=reason or None, actor=actor, at=at)
    return balance(session, guild_id, user_id)


def _order_words(order: Order) -> str:
    if order.kind == "train":
        return "training"
    if (order.params or {}).get("mode") == "group":
        return "group picture"
    count = int((order.params or {}).get("count") or 1)
    return f"{count} picture{'s' if count != 1 else ''}"


def charge(session: Session, order: Order, amount: int, *, actor: object | None = None) -> int:
    """The order's one charge; InsufficientCredits (nothing written) when the member's balance is short.
    ``actor``: who placed it (default: the order's member). Returns the balance left."""
    from storage.order_store import InsufficientCredits, OrderStoreError

    amount = _checked(amount)
    guild, user = _member(order.guild_id, order.user_id)
    if amount == 0:
        return balance(session, guild, user)
    if order.credits_charged:
        raise OrderStoreError(f"order {order.id} is charged already")
    # One conditional INSERT … SELECT: the balance check and the debit cannot be split by another writer.
    have = select(func.coalesce(func.sum(CreditEntry.amount), 0)).where(*_of(guild, user)).scalar_subquery()
    row = sa_select(
        literal(guild),
        literal(user),
        literal("charge"),
        literal(-amount),
        literal(order.id),
        literal(_order_words(order)),
        literal(str(order.user_id if actor is None else actor)[:32]),
        literal(now()),
    ).where(have >= amount)
    columns = ["guild_id", "user_id", "kind", "amount", "order_id", "reason", "actor", "at"]
    result = session.execute(insert(CreditEntry).from_select(columns, row))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise InsufficientCredits(user, amount, balance(session, guild, user))
    order.credits_charged = amount
    order.updated_at = now()
    session.add(order)
    session.flush()
    return balance(session, guild, user)


def order_sums(session: Session, order_id: str) -> tuple[int, int]:
    """(charged, refunded) by the order's entries."""
    rows = session.execute(
        select(CreditEntry.kind, func.sum(CreditEntry.amount))
        .where(CreditEntry.order_id == order_id, col(CreditEntry.kind).in_(("charge", "refund")))
        .group_by(CreditEntry.kind)
    ).all()
    sums = {kind: int(total) for kind, total in rows}
    return -sums.get("charge", 0), sums.get("refund", 0)


def end_words(by: str, order_user_id: str) -> tuple[str, str]:
    """(actor, reason) of a refund for an order ended by ``by``: a member's or admin's id, or a code."""
    if by.isdigit():
        return by, "cancelled by the member" if by == order_user_id else "cancelled by an admin"
    return SYSTEM, _END_WORDS.get(by, _END_WORDS["cancelled"])


def refund(session: Session, order: Order, *, actor: object = SYSTEM, reason: str | None = None) -> int:
    """Give back what the order's charge took and its refunds have not given back yet, as one entry; returns
    the credits refunded (0, and nothing written, the second time or for an order charged nothing)."""
    charged, refunded = order_sums(session, order.id)
    owed = charged - refunded
    if owed <= 0:
        return 0
    words = reason or _END_WORDS["failed" if order.status == "failed" else "cancelled"]
    _append(
        session, order.guild_id, order.user_id, "refund", owed, order_id=order.id, reason=words, actor=actor
    )
    order.credits_refunded = refunded + owed
    order.updated_at = now()
    session.add(order)
    return owed


def _unspent_old(cutoff: float) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """(old grants, consumed): credits granted at or before ``cutoff``, and credits charged − refunded +
    expired, per member (SQL expressions over CreditEntry)."""
    is_grant = col(CreditEntry.kind).in_(GRANT_KINDS)
    old = func.sum(case((is_grant & (col(CreditEntry.at) <= cutoff), CreditEntry.amount), else_=0))
    used = func.sum(case((is_grant, 0), else_=-col(CreditEntry.amount)))
    return old, used


def expire(
    session: Session, guild_id: object | None, user_id: object, *, days: int, at: float | None = None
) -> int:
    """Expire the unspent part of the member's grants older than ``days`` (none when ``days`` is 0); returns
    the credits expired (0 when run again)."""
    if days <= 0:
        return 0
    when = now() if at is None else at
    guild, user = _member(guild_id, user_id)
    old, used = _unspent_old(when - days * DAY_S)
    got = session.execute(sa_select(old, used).where(*_of(guild, user))).one()
    due = min(int(got[0] or 0) - int(got[1] or 0), balance(session, guild, user))
    if due <= 0:
        return 0
    _append(session, guild, user, "expiry", -due, reason=f"unspent for {days} days", at=when)
    return due


def expire_all(engine: Engine, days: int, at: float | None = None) -> int:
    """The periodic round: every member with credits due to expire, one transaction each (re-checked inside);
    returns the credits expired."""
    if days <= 0:
        return 0
    when = now() if at is None else at
    old, used = _unspent_old(when - days * DAY_S)
    with read_session(engine) as s:
        due = s.execute(
            select(CreditEntry.guild_id, CreditEntry.user_id)
            .group_by(CreditEntry.guild_id, CreditEntry.user_id)
            .having(old > used)
        ).all()
    total = 0
    for guild, user in due:
        with transaction(engine) as s:
            total += expire(s, guild, user, days=days, at=when)
    return total


def ledger(engine: Engine, guild_id: object | None, user_id: object, limit: int = 10) -> Ledger:
    """The member's balance in that server and their last ``limit`` entries there, the newest first."""
    guild, user = _member(guild_id, user_id)
    with read_session(engine) as s:
        rows = s.exec(
            select(CreditEntry).where(*_of(guild, user)).order_by(col(CreditEntry.id).desc()).limit(limit)
        ).all()
        lines = [CreditLine(r.kind, r.amount, r.order_id, r.reason, r.actor, r.at) for r in rows]
        return Ledger(balance(s, guild, user), lines)
