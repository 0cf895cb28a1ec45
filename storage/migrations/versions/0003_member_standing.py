"""member standing per server

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Credits, bans and quota overrides move from `users` (one row per member, for every server) to `member_standing`
(one row per server and member; guild "*" is a bot owner's ban everywhere), which /forget-me keeps.

Where the old values land:
- credits and the quota override: the server of the member's latest order, else the server of the latest admin
  action naming them (audit log), else "" (no server). Starting credits count as granted there when the member
  had ordered; a member who never ordered (e.g. a row made by /admin ban) gets them at their first order. The
  balance moved counts as `credits_granted` there (the history of grants was not recorded).
- a ban: the server whose admin banned them last (audit log); with no such record, everywhere ("*"), as before,
  until a bot owner lifts it.
- the day's order times per server, from the orders of the last 24 h, so the daily quota carries on.
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DAY_S = 86400.0


def upgrade() -> None:
    op.create_table(
        "member_standing",
        sa.Column("guild_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("starting_credits_granted", sa.Boolean(), nullable=False),
        sa.Column("credits_granted", sa.Integer(), nullable=False),
        sa.Column("banned", sa.Boolean(), nullable=False),
        sa.Column("ban_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("order_times", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", "user_id"),
    )
    _move_users_to_standing(op.get_bind())
    for column in ("credits", "banned", "ban_reason", "daily_quota"):
        op.drop_column("users", column)


def _move_users_to_standing(conn: sa.Connection) -> None:
    at = time.time()
    rows: dict[tuple[str, str], dict[str, object]] = {}

    def row(guild: str, uid: str) -> dict[str, object]:
        return rows.setdefault(
            (guild, uid),
            {
                "credits": 0,
                "granted": False,
                "credits_granted": 0,
                "banned": False,
                "reason": None,
                "quota": None,
                "times": [],
            },
        )

    def latest_guild(sql: str, uid: str) -> str | None:
        found = conn.exec_driver_sql(sql, (uid,)).first()
        return str(found[0]) if found and found[0] is not None else None

    users = conn.exec_driver_sql("SELECT id, credits, banned, ban_reason, daily_quota FROM users").all()
    for uid, credits, banned, reason, quota in users:
        uid = str(uid)
        ordered = latest_guild(
            "SELECT guild_id FROM orders WHERE user_id = ? AND guild_id IS NOT NULL "
            "ORDER BY created_at DESC LIMIT 1",
            uid,
        )
        any_order = conn.exec_driver_sql("SELECT 1 FROM orders WHERE user_id = ? LIMIT 1", (uid,)).first()
        named = latest_guild(
            "SELECT guild_id FROM audit_log WHERE target = ? AND guild_id IS NOT NULL "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            f"<@{uid}>",
        )
        home = row(ordered or named or "", uid)
        home.update(credits=int(credits or 0), credits_granted=int(credits or 0), quota=quota)
        home["granted"] = any_order is not None
        if banned:
            banned_in = latest_guild(
                "SELECT guild_id FROM audit_log WHERE action = 'ban' AND target = ? AND guild_id IS NOT NULL "
                "ORDER BY created_at DESC, id DESC LIMIT 1",
                f"<@{uid}>",
            )
            row(banned_in or "*", uid).update(banned=True, reason=reason)
    recent = conn.exec_driver_sql(
        "SELECT guild_id, user_id, created_at FROM orders WHERE created_at > ?", (at - _DAY_S,)
    ).all()
    for guild, uid, created in recent:
        times = row("" if guild is None else str(guild), str(uid))["times"]
        assert isinstance(times, list)
        times.append(float(created))
    for (guild, uid), r in rows.items():
        conn.exec_driver_sql(
            "INSERT INTO member_standing (guild_id, user_id, credits, starting_credits_granted, "
            "credits_granted, banned, ban_reason, daily_quota, order_times, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                guild,
                uid,
                r["credits"],
                r["granted"],
                r["credits_granted"],
                r["banned"],
                r["reason"],
                r["quota"],
                json.dumps(sorted(r["times"])),  # type: ignore[call-overload]  # a list: built above
                at,
            ),
        )


def downgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): a batch copy would drop `users`, which orders reference.
    op.add_column("users", sa.Column("credits", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("users", sa.Column("banned", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("users", sa.Column("ban_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("users", sa.Column("daily_quota", sa.Integer(), nullable=True))
    # One balance for every server again: the sum; a ban anywhere becomes a ban everywhere.
    op.execute(
        "UPDATE users SET "
        "credits = COALESCE((SELECT SUM(credits) FROM member_standing s WHERE s.user_id = users.id), 0), "
        "banned = EXISTS (SELECT 1 FROM member_standing s WHERE s.user_id = users.id AND s.banned), "
        "ban_reason = (SELECT ban_reason FROM member_standing s "
        "WHERE s.user_id = users.id AND s.banned LIMIT 1), "
        "daily_quota = (SELECT MAX(daily_quota) FROM member_standing s WHERE s.user_id = users.id)"
    )
    op.drop_table("member_standing")
