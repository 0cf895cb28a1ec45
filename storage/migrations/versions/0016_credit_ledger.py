"""credits as a ledger: append-only credit_entries; the balance is their sum, no longer a column

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

Every member_standing row with credits > 0 gets one ``opening`` entry of that amount (actor ``system``), so each
balance is kept; then member_standing loses ``credits`` and ``credits_granted``. Orders keep ``credits_charged``
and ``credits_refunded``: the order's own entries, now written with them by storage/credits.py.

Downgrade puts the columns back: ``credits`` is the sum of the member's entries, ``credits_granted`` the sum of
their starting, grant and opening entries (what the ledger knows of the grants made before it began is the
opening balance), and drops the table.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("guild_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("credit_entries", schema=None) as batch_op:
        batch_op.create_index("ix_credit_entries_member", ["guild_id", "user_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credit_entries_order_id"), ["order_id"], unique=False)
    op.get_bind().exec_driver_sql(
        "INSERT INTO credit_entries (guild_id, user_id, kind, amount, order_id, reason, actor, at) "
        "SELECT guild_id, user_id, 'opening', credits, NULL, 'balance before the ledger', 'system', ? "
        "FROM member_standing WHERE credits > 0 ORDER BY guild_id, user_id",
        (time.time(),),
    )
    with op.batch_alter_table("member_standing", schema=None) as batch_op:
        batch_op.drop_column("credits_granted")
        batch_op.drop_column("credits")


def downgrade() -> None:
    with op.batch_alter_table("member_standing", schema=None) as batch_op:
        batch_op.add_column(sa.Column("credits", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("credits_granted", sa.Integer(), nullable=False, server_default="0"))
    conn = op.get_bind()
    # A member with entries but no standing row (none today: every writer creates it) gets one back.
    conn.exec_driver_sql(
        "INSERT OR IGNORE INTO member_standing (guild_id, user_id, credits, starting_credits_granted, "
        "credits_granted, banned, ban_reason, daily_quota, order_times, updated_at) "
        "SELECT DISTINCT guild_id, user_id, 0, 0, 0, 0, NULL, NULL, '[]', ? FROM credit_entries",
        (time.time(),),
    )
    conn.exec_driver_sql(
        "UPDATE member_standing SET "
        "credits = COALESCE((SELECT MAX(0, SUM(e.amount)) FROM credit_entries e "
        "WHERE e.guild_id = member_standing.guild_id AND e.user_id = member_standing.user_id), 0), "
        "credits_granted = COALESCE((SELECT SUM(e.amount) FROM credit_entries e "
        "WHERE e.guild_id = member_standing.guild_id AND e.user_id = member_standing.user_id "
        "AND e.kind IN ('starting', 'grant', 'opening')), 0)"
    )
    with op.batch_alter_table("credit_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credit_entries_order_id"))
        batch_op.drop_index("ix_credit_entries_member")
    op.drop_table("credit_entries")
