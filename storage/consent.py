"""Consent to group pictures: one row per (order, member pictured), and a member's "no group requests" choice.

A group order is rendered only when every one of its rows is ``accepted``: the caller's row is accepted when
they place the order, every other member's is ``asked`` until they answer (``accepted`` / ``refused``) or its
time runs out (``expired``, by the bot's periodic work, so a restart never leaves an order waiting). An
accepted member may withdraw (``revoked``) until the picture is delivered. A re-roll or variation carries the
parent's consent forward (``carried_from``): still one accepted row per order and member.

Every function takes an open Session and never commits (storage/orders.py's convention)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from storage.models import GroupConsent, GroupPreference, now


@dataclass(frozen=True)
class Answer:
    """What a member's click did: ``status`` is their row's status afterwards (None: not asked in that order);
    ``changed`` False when the row was no longer open (answered, expired, withdrawn)."""

    status: str | None
    changed: bool
    all_accepted: bool


def _sid(value: object) -> str:
    return str(value)


def record_request(
    session: Session,
    order_id: str,
    *,
    guild_id: object | None,
    caller_id: object,
    members: Sequence[tuple[object, str]],
    expires_at: float,
    carried_from: str | None = None,
) -> None:
    """Rows for the members (``(user_id, model_id)``, left to right, the caller among them): the caller's
    accepted, the others asked — or all accepted when the consent is carried from ``carried_from``."""
    at = now()
    for position, (user_id, model_id) in enumerate(members):
        accepted = carried_from is not None or _sid(user_id) == _sid(caller_id)
        session.add(
            GroupConsent(
                order_id=order_id,
                user_id=_sid(user_id),
                guild_id=None if guild_id is None else _sid(guild_id),
                position=position,
                model_id=model_id,
                status="accepted" if accepted else "asked",
                asked_at=at,
                answered_at=at if accepted else None,
                expires_at=expires_at,
                carried_from=carried_from,
            )
        )
    session.flush()


def consents(session: Session, order_id: str) -> list[GroupConsent]:
    """The order's rows, left to right."""
    query = select(GroupConsent).where(GroupConsent.order_id == order_id).order_by(col(GroupConsent.position))
    return list(session.exec(query))


def all_accepted(session: Session, order_id: str) -> bool:
    rows = consents(session, order_id)
    return bool(rows) and all(r.status == "accepted" for r in rows)


def answer(session: Session, order_id: str, user_id: object, accept: bool, at: float | None = None) -> Answer:
    """The asked member's Accept or Refuse. Only an open (``asked``, not yet expired) row changes."""
    at = now() if at is None else at
    row = session.get(GroupConsent, (order_id, _sid(user_id)), populate_existing=True)
    if row is None:
        return Answer(None, False, False)
    changed = row.status == "asked" and row.expires_at > at
    if changed:
        row.status, row.answered_at = ("accepted" if accept else "refused"), at
        session.add(row)
        session.flush()
    return Answer(row.status, changed, all_accepted(session, order_id))


def revoke(session: Session, order_id: str, user_id: object) -> bool:
    """An accepted member withdraws; False when they had not accepted (or already withdrew)."""
    result = session.execute(
        update(GroupConsent)
        .where(
            col(GroupConsent.order_id) == order_id,
            col(GroupConsent.user_id) == _sid(user_id),
            col(GroupConsent.status) == "accepted",
        )
        .values(status="revoked", answered_at=now())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def expire_due(session: Session, at: float | None = None) -> list[str]:
    """Mark every ``asked`` row past its time ``expired``; returns the orders concerned."""
    at = now() if at is None else at
    rows = session.exec(
        select(GroupConsent).where(col(GroupConsent.status) == "asked", col(GroupConsent.expires_at) <= at)
    ).all()
    for row in rows:
        row.status, row.answered_at = "expired", at
        session.add(row)
    session.flush()
    return sorted({r.order_id for r in rows})


def set_request_message(session: Session, order_id: str, user_id: object, message_id: object) -> None:
    session.execute(
        update(GroupConsent)
        .where(col(GroupConsent.order_id) == order_id, col(GroupConsent.user_id) == _sid(user_id))
        .values(request_message_id=_sid(message_id))
    )


def pictured_order_ids(session: Session, user_id: object, *, others_only: bool = True) -> list[str]:
    """Orders whose picture shows the member; ``others_only``: those another member placed."""
    rows = session.exec(select(GroupConsent).where(GroupConsent.user_id == _sid(user_id))).all()
    if not others_only:
        return [r.order_id for r in rows]
    from storage.models import Order

    ids = [r.order_id for r in rows]
    if not ids:
        return []
    own = set(
        session.exec(select(Order.id).where(col(Order.id).in_(ids), Order.user_id == _sid(user_id))).all()
    )
    return [i for i in ids if i not in own]


def orders_using_model(session: Session, user_id: object, model_id: str) -> list[str]:
    """The group orders that picture the member with that model."""
    query = select(GroupConsent.order_id).where(
        GroupConsent.user_id == _sid(user_id), GroupConsent.model_id == model_id
    )
    return list(session.exec(query))


def delete_member(session: Session, user_id: object) -> int:
    """/forget-me: the member's consent rows (they are about them), and every row of the orders they placed
    (those orders are deleted with the member's data)."""
    from storage.models import Order

    own_orders = select(Order.id).where(Order.user_id == _sid(user_id))
    result = session.execute(
        delete(GroupConsent).where(
            (col(GroupConsent.user_id) == _sid(user_id)) | col(GroupConsent.order_id).in_(own_orders)
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def takes_requests(session: Session, guild_id: object, user_id: object) -> bool:
    row = session.get(GroupPreference, (_sid(guild_id), _sid(user_id)))
    return row is None or not row.no_requests


def set_takes_requests(session: Session, guild_id: object, user_id: object, takes: bool) -> None:
    key = (_sid(guild_id), _sid(user_id))
    row = session.get(GroupPreference, key) or GroupPreference(guild_id=key[0], user_id=key[1])
    row.no_requests, row.updated_at = not takes, now()
    session.add(row)
    session.flush()
