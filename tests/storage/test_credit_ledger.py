"""Credits as a ledger (storage/credits.py, issue 15 item 2): append-only entries, the balance is their sum,
one refund per order, expiry of unspent old grants, and migration 0016 keeping the balances of 0015."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine
from sqlmodel import select

from storage import (
    CreditEntry,
    InsufficientCredits,
    OrderStoreError,
    alembic_config,
    credits,
    migrate,
    open_engine,
    order_store,
    read_session,
    standing,
    transaction,
)
from storage.lifecycle import placing

DAY = 86400.0


def _entries(engine: Engine, guild: str = "g1", user: str = "7") -> list[tuple[str, int]]:
    with read_session(engine) as s:
        rows = s.exec(
            select(CreditEntry)
            .where(CreditEntry.guild_id == guild, CreditEntry.user_id == user)
            .order_by(CreditEntry.id)  # type: ignore[arg-type]
        )
        return [(e.kind, e.amount) for e in rows]


def _order(engine: Engine, charge: int, *, user: int = 7, guild: str = "g1", starting: int = 0) -> str:
    with transaction(engine) as s:
        return order_store.create_order(
            s, user_id=user, kind="render", guild_id=guild, charge=charge, starting_credits=starting
        ).id


def test_every_movement_is_an_entry_and_the_balance_is_their_sum(engine: Engine) -> None:
    oid = _order(engine, 3, starting=10)
    with transaction(engine) as s:
        assert credits.grant(s, "g1", 7, 5, actor=42, reason="contest winner") == 12
    with transaction(engine) as s:  # the cancel path: refund in the transaction that ends the order
        assert placing._end(s, oid, placing.OrderStatus.CANCELLED, "cancelled", None, by="7") == 3
    with transaction(engine) as s:
        assert order_store.refund_order(s, oid) == 0  # once per order
        order = order_store.get_order(s, oid)
        assert order is not None and (order.credits_charged, order.credits_refunded) == (3, 3)
    assert _entries(engine) == [("starting", 10), ("charge", -3), ("grant", 5), ("refund", 3)]
    lines = credits.ledger(engine, "g1", 7).lines
    assert lines[0].reason == "cancelled by the member" and lines[0].actor == "7"
    assert lines[1].actor == "42" and lines[1].reason == "contest winner"
    assert credits.ledger(engine, "g1", 7).balance == 15 == sum(a for _, a in _entries(engine))
    assert credits.ledger(engine, "g2", 7).balance == 0  # another server's balance is its own


def test_a_short_balance_refuses_the_charge_and_writes_nothing(engine: Engine) -> None:
    _order(engine, 0, starting=4)
    with pytest.raises(InsufficientCredits, match="needs 5 credits and has 4"), transaction(engine) as s:
        order_store.create_order(s, user_id=7, kind="render", guild_id="g1", charge=5)
    with pytest.raises(OrderStoreError, match="at least 1"), transaction(engine) as s:
        credits.grant(s, "g1", 7, 0, actor=42)
    assert _entries(engine) == [("starting", 4)]


def test_an_admin_cancel_and_a_group_end_say_who_or_what_in_the_refund(engine: Engine) -> None:
    first, second = _order(engine, 2, starting=10), _order(engine, 1)
    with transaction(engine) as s:
        placing._end(s, first, placing.OrderStatus.CANCELLED, "cancelled", None, by="99")
        placing._end(s, second, placing.OrderStatus.CANCELLED, "cancelled", None, by="consent_timeout")
    lines = credits.ledger(engine, "g1", 7).lines
    assert (lines[1].actor, lines[1].reason) == ("99", "cancelled by an admin")
    assert (lines[0].actor, lines[0].reason) == ("system", "not everyone answered the group request in time")


def _expire(engine: Engine, days: int, at: float) -> int:
    return credits.expire_all(engine, days, at=at)


def test_expiry_takes_the_unspent_part_of_old_grants_once(engine: Engine) -> None:
    t0 = time.time()
    with transaction(engine) as s:
        credits.grant(s, "g1", 7, 10, actor=42, at=t0 - 40 * DAY)  # old: 10
        credits.grant(s, "g1", 7, 10, actor=42, at=t0 - 1 * DAY)  # recent: 10
    oid = _order(engine, 4)  # spent from the oldest grant first
    assert _expire(engine, 0, t0) == 0  # 0 days: credits never expire
    assert _expire(engine, 30, t0) == 6  # the old grant's unspent 6
    assert _expire(engine, 30, t0) == 0  # idempotent
    with read_session(engine) as s:
        assert standing.credits_of(s, "g1", 7) == 10
    # A refund gives back to the grant the credits came from: 4 of the old grant, expired at the next round.
    with transaction(engine) as s:
        assert order_store.mark_failed(s, oid, "oom", "out of memory")
        assert order_store.refund_order(s, oid) == 4
    assert _expire(engine, 30, t0) == 4
    assert _expire(engine, 30, t0 + 2 * DAY) == 0  # the recent grant is not 30 days old yet
    assert _expire(engine, 30, t0 + 31 * DAY) == 10
    with read_session(engine) as s:
        assert standing.credits_of(s, "g1", 7) == 0
    assert [k for k, _ in _entries(engine)].count("expiry") == 3


def test_expiry_never_takes_what_was_spent(engine: Engine) -> None:
    t0 = time.time()
    with transaction(engine) as s:
        credits.grant(s, "g1", 7, 5, actor=42, at=t0 - 40 * DAY)
        credits.grant(s, "g1", 7, 5, actor=42, at=t0 - 1 * DAY)
    _order(engine, 8)  # all of the old grant and 3 of the recent one
    assert _expire(engine, 30, t0) == 0
    with read_session(engine) as s:
        assert standing.credits_of(s, "g1", 7) == 2


def _standing_0015(url: str) -> None:
    engine = open_engine(url)
    try:
        with engine.begin() as conn:
            insert = (
                "INSERT INTO member_standing (guild_id, user_id, credits, starting_credits_granted, "
                "credits_granted, banned, ban_reason, daily_quota, order_times, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 0, NULL, NULL, '[]', ?)"
            )
            for row in (("g1", "carol", 37, 1, 60), ("g2", "carol", 5, 1, 50), ("g1", "dave", 0, 1, 50)):
                conn.exec_driver_sql(insert, (*row, time.time()))
            conn.exec_driver_sql(insert, ("g1", "erin", 0, 0, 0, time.time()))
    finally:
        engine.dispose()


def test_migration_0016_keeps_every_balance_and_downgrades(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'photogen.db'}"
    command.upgrade(alembic_config(url), "0015")
    _standing_0015(url)
    migrate(url)
    engine = open_engine(url)
    try:
        with read_session(engine) as s:
            assert standing.credits_of(s, "g1", "carol") == 37
            assert standing.credits_of(s, "g2", "carol") == 5
            assert standing.credits_of(s, "g1", "dave") == 0
            entries = [
                (e.guild_id, e.user_id, e.kind, e.amount, e.actor) for e in s.exec(select(CreditEntry))
            ]
            # Dave spent everything: no entry, and his starting credits stay granted (not given again).
            assert standing.get_standing(s, "g1", "dave").starting_credits_granted  # type: ignore[union-attr]
        assert sorted(entries) == [
            ("g1", "carol", "opening", 37, "system"),
            ("g2", "carol", "opening", 5, "system"),
        ]
        with transaction(engine) as s:  # the ledger goes on from there
            credits.grant(s, "g1", "carol", 3, actor=42)
        with engine.connect() as conn:
            columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(member_standing)")}
        assert "credits" not in columns and "credits_granted" not in columns
    finally:
        engine.dispose()

    command.downgrade(alembic_config(url), "0015")
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT guild_id, user_id, credits, credits_granted FROM member_standing ORDER BY 1, 2"
            ).all()
            tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        assert [tuple(r) for r in got] == [
            ("g1", "carol", 40, 40),
            ("g1", "dave", 0, 0),
            ("g1", "erin", 0, 0),
            ("g2", "carol", 5, 5),
        ]
        assert "credit_entries" not in tables
    finally:
        engine.dispose()
