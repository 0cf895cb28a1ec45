"""server budgets: a monthly limit (dollars or GPU-hours), a confirm threshold and the alerts already posted

Revision ID: 0017
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("budget_limit", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "budget_unit",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="usd",
            )
        )
        batch_op.add_column(sa.Column("budget_confirm_above", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("budget_alert_month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True)
        )
        batch_op.add_column(
            sa.Column("budget_alert_percent", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("budget_alert_percent")
        batch_op.drop_column("budget_alert_month")
        batch_op.drop_column("budget_confirm_above")
        batch_op.drop_column("budget_unit")
        batch_op.drop_column("budget_limit")
