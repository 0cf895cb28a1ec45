"""Each member's standing in each server (MemberStanding): ban, quota override, the day's order times, whether
the starting credits were granted (the credits themselves are a ledger: storage/credits.py).

A server's admins act on their own server's rows only; the row with guild ``"*"`` (ALL_GUILDS) is a bot owner's
ban everywhere. Rows survive /forget-me: forgetting deletes personal data, never the record of what was granted
or used, so it is no way to get fresh credits or a fresh quota.

Like storage.order_store, every function takes an open Session (inside ``storage.transaction``) and never commits.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from storage.models import MemberStanding, now

ALL_GUILDS = "*"  # a bot owner's ban: refused in every server
NO_GUILD = ""  # an order placed outside any server (none today; older rows may have no guild)
QUOTA_WINDOW_S = 86400.0  # the daily quota counts the orders of the last day


def guild_key(guild_id: object | None) -> str:
    return NO_GUILD if guild_id is None else str(guild_id)


def _amount(amount: int) -> int:
    from storage.order_store import _amount as checked  # one rule for credit amounts (OrderStoreError)

    return checked(amount)


def get_standing(session: Session, guild_id: object | None, user_id: object) -> MemberStanding | None:
    return session.get(MemberStanding, (guild_key(guild_id), str(user_id)), populate_existing=True)


def ensure_standing(session: Session, guild_id: object | None, user_id: object) -> MemberStanding:
    """The member's row in that server, created empty (no credits) if missing; never changes an existing one."""
    session.execute(
        sqlite_insert(MemberStanding)
        .values(guild_id=guild_key(guild_id), user_id=str(user_id), order_times=[], updated_at=now())
        .on_conflict_do_nothing(index_elements=["guild_id", "user_id"])
    )
    row = get_standing(session, guild_id, user_id)
    assert row is not None
    return row


def _add(session: Session, guild_id: object | None, user_id: object, **values: object) -> MemberStanding:
    ensure_standing(session, guild_id, user_id)
    session.execute(
        update(MemberStanding)
        .where(MemberStanding.guild_id == guild_key(guild_id), MemberStanding.user_id == str(user_id))
        .values(updated_at=now(), **values)
    )
    row = get_standing(session, guild_id, user_id)
    assert row is not None
    return row


def credits_of(session: Session, guild_id: object | None, user_id: object) -> int:
    """The member's balance in that server: the sum of their ledger entries there (storage/credits.py)."""
    from storage import credits  # (it imports this module)

    return credits.balance(session, guild_id, user_id)


def set_ban(
    session: Session, guild_id: object | None, user_id: object, banned: bool, reason: str | None = None
) -> MemberStanding:
    """Ban or unban; credits, quota and the starting-credit record are left as they are."""
    return _add(session, guild_id, user_id, banned=banned, ban_reason=(reason or None) if banned else None)


def ban_reason(session: Session, guild_id: object | None, user_id: object) -> str | None:
    """None when the member may use the bot in that server; else the reason ('' if none given). A ban
    everywhere (ALL_GUILDS) counts in every server."""
    for key in (ALL_GUILDS, guild_key(guild_id)):
        row = get_standing(session, key, user_id)
        if row is not None and row.banned:
            return row.ban_reason or ""
    return None


def set_quota(
    session: Session, guild_id: object | None, user_id: object, daily: int | None
) -> MemberStanding:
    return _add(session, guild_id, user_id, daily_quota=None if daily is None else _amount(daily))


def note_order(session: Session, guild_id: object | None, user_id: object, at: float | None = None) -> None:
    """Count one order towards the member's daily quota in that server (kept through /forget-me)."""
    at = now() if at is None else at
    row = ensure_standing(session, guild_id, user_id)
    times = [t for t in row.order_times if t > at - QUOTA_WINDOW_S]
    row.order_times = [*times, at]
    row.updated_at = now()
    session.add(row)
    session.flush()


def prune_order_times(session: Session, user_id: object, at: float | None = None) -> None:
    """Drop the member's order times older than the quota window, in every server (when they are forgotten)."""
    cutoff = (now() if at is None else at) - QUOTA_WINDOW_S
    for row in standings_of_user(session, user_id):
        kept = [t for t in row.order_times if t > cutoff]
        if kept != row.order_times:
            row.order_times = kept
            session.add(row)
    session.flush()


def orders_since(session: Session, guild_id: object | None, user_id: object, since: float) -> int:
    row = get_standing(session, guild_id, user_id)
    return sum(1 for t in row.order_times if t >= since) if row else 0


def standings_of_user(session: Session, user_id: object) -> list[MemberStanding]:
    query = select(MemberStanding).where(MemberStanding.user_id == str(user_id))
    return list(session.exec(query.order_by(MemberStanding.guild_id)))
