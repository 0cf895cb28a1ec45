"""metrics and job usage

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The dashboard's sampled series (queue depth, fleet size over time) and the per-job usage behind cost per order.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_usage",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("job_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("agent_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("instance_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("gpu_seconds", sa.Float(), nullable=False),
        sa.Column("price_per_hour", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("job_usage", schema=None) as batch_op:
        batch_op.create_index("ix_job_usage_at", ["at"], unique=False)
        batch_op.create_index("ix_job_usage_order", ["order_id"], unique=False)

    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("labels", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("metric_samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_metric_samples_at"), ["at"], unique=False)
        batch_op.create_index("ix_metric_samples_name_at", ["name", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("metric_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_metric_samples_name_at")
        batch_op.drop_index(batch_op.f("ix_metric_samples_at"))

    op.drop_table("metric_samples")
    with op.batch_alter_table("job_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_job_usage_order")
        batch_op.drop_index("ix_job_usage_at")

    op.drop_table("job_usage")
