"""Member standing per server (storage.standing) and migration 0003, which moves the old one-for-every-server
credits and bans of `users` into it."""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from storage import (
    alembic_config,
    credits,
    current_revision,
    migrate,
    open_engine,
    order_store,
    read_session,
    standing,
    transaction,
)
from storage.standing import ALL_GUILDS


def _old_rows(url: str) -> None:
    """A 0002 database as the old bot left it: one balance and one ban per member for every server."""
    now = time.time()
    engine = open_engine(url)
    try:
        with engine.begin() as conn:
            sql = conn.exec_driver_sql
            users = (
                "INSERT INTO users (id, credits, banned, ban_reason, consent_at, daily_quota, created_at) "
            )
            sql(users + "VALUES ('carol', 37, 0, NULL, NULL, 5, ?)", (now,))  # ordered in g1, then g2
            sql(users + "VALUES ('dave', 0, 1, 'spam', NULL, NULL, ?)", (now,))  # banned by g1's admin
            sql(users + "VALUES ('erin', 0, 1, 'old', NULL, NULL, ?)", (now,))  # banned, no record of where
            order = (
                "INSERT INTO orders (id, user_id, guild_id, kind, status, params, credits_charged, "
                "credits_refunded, created_at, updated_at) "
                "VALUES (?, ?, ?, 'render', 'delivered', '{}', 1, 0, ?, ?)"
            )
            sql(order, ("o1", "carol", "g1", now - 3 * 86400, now - 3 * 86400))
            sql(order, ("o2", "carol", "g2", now - 60, now - 60))
            sql(
                "INSERT INTO audit_log (guild_id, actor_id, action, target, detail, created_at) "
                "VALUES ('g1', 'ada', 'ban', '<@dave>', 'spam', ?)",
                (now,),
            )
    finally:
        engine.dispose()


def test_migration_0003_moves_credits_and_bans_into_server_standing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'photogen.db'}"
    command.upgrade(alembic_config(url), "0002")
    _old_rows(url)
    migrate(url)
    engine = open_engine(url)
    try:
        assert current_revision(engine) == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        with read_session(engine) as s:
            # Carol's balance and quota override land where she last ordered; her starting credits count as
            # granted there, and the order of the last day keeps counting towards that server's quota.
            carol = standing.get_standing(s, "g2", "carol")
            assert carol is not None and carol.daily_quota == 5
            assert standing.credits_of(s, "g2", "carol") == 37  # 0016 carried it into the ledger
            assert (
                carol.starting_credits_granted
                and standing.orders_since(s, "g2", "carol", time.time() - 86400) == 1
            )
            assert (
                standing.get_standing(s, "g1", "carol") is None
            )  # she gets g1's starting credits as anyone would
            # Dave was banned by g1's admin: banned in g1, free elsewhere; never ordered, so the starting credits
            # are still his to get at a first order.
            assert (
                standing.ban_reason(s, "g1", "dave") == "spam"
                and standing.ban_reason(s, "g2", "dave") is None
            )
            dave = standing.get_standing(s, "g1", "dave")
            assert dave is not None and not dave.starting_credits_granted
            # Erin's ban has no record of where it was made: it stays a ban everywhere, for a bot owner to lift.
            assert standing.get_standing(s, ALL_GUILDS, "erin").banned  # type: ignore[union-attr]
            assert standing.ban_reason(s, "g9", "erin") == "old"
            # The member rows stay (orders reference them); the per-server columns are gone.
            assert order_store.get_user(s, "carol") is not None
        with engine.connect() as conn:
            columns = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(users)")}
        assert columns == {"id", "consent_at", "created_at"}
    finally:
        engine.dispose()


def test_starting_credits_once_per_server_and_charges_stay_in_their_server(engine: Engine) -> None:
    with transaction(engine) as s:
        order_store.create_order(s, user_id=1, kind="render", guild_id="g1", charge=4, starting_credits=10)
        order_store.create_order(s, user_id=1, kind="render", guild_id="g2", charge=1, starting_credits=10)
    with transaction(engine) as s:
        standing.note_order(s, "g2", 1, at=time.time() - 2 * 86400)  # an old time: dropped when forgetting
        assert order_store.delete_user_data(s, 1).user == 1
    with transaction(engine) as s:
        oid = order_store.create_order(
            s, user_id=1, kind="render", guild_id="g1", charge=1, starting_credits=10
        ).id
        order_store.apply_event(s, "e", oid, status="failed", error_code="oom", error_message="out of memory")
    with read_session(engine) as s:
        assert standing.credits_of(s, "g1", 1) == 6  # 10 once, -4; the failed order refunded into g1
        assert standing.credits_of(s, "g2", 1) == 9
        assert standing.orders_since(s, "g2", 1, 0) == 1
        assert standing.orders_since(s, "g1", 1, 0) == 2  # the forgotten order still counts for the quota
        assert [(e.kind, e.amount) for e in credits.ledger(engine, "g1", 1).lines if e.amount > 0] == [
            ("refund", 1),
            ("starting", 10),
        ]
