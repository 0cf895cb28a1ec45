"""the HTTP API: tenants, API keys (hashed), subjects, idempotency records, webhook endpoints and deliveries

Revision ID: 0018
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "api_tenants",
        sa.Column("id", _S(length=64), nullable=False),
        sa.Column("name", _S(length=200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", _S(length=32), nullable=False),
        sa.Column("tenant_id", _S(length=64), nullable=False),
        sa.Column("token_hash", _S(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("label", _S(length=200), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"], unique=False)
    op.create_table(
        "api_subjects",
        sa.Column("id", _S(length=32), nullable=False),
        sa.Column("tenant_id", _S(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_subjects_tenant_id", "api_subjects", ["tenant_id"], unique=False)
    op.create_table(
        "api_idempotency",
        sa.Column("tenant_id", _S(length=64), nullable=False),
        sa.Column("key", _S(length=200), nullable=False),
        sa.Column("body_hash", _S(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key"),
    )
    op.create_table(
        "api_webhooks",
        sa.Column("id", _S(length=64), nullable=False),
        sa.Column("tenant_id", _S(length=64), nullable=False),
        sa.Column("url", _S(length=2000), nullable=False),
        sa.Column("secret", _S(length=128), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_webhooks_tenant_id", "api_webhooks", ["tenant_id"], unique=False)
    op.create_table(
        "api_webhook_deliveries",
        sa.Column("id", _S(length=64), nullable=False),
        sa.Column("tenant_id", _S(length=64), nullable=False),
        sa.Column("endpoint_id", _S(length=64), nullable=False),
        sa.Column("order_id", _S(length=64), nullable=True),
        sa.Column("event", _S(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", _S(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("attempt_log", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_api_webhook_deliveries_tenant_id", "api_webhook_deliveries", ["tenant_id"], unique=False
    )
    op.create_index(
        "ix_api_webhook_deliveries_due", "api_webhook_deliveries", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_api_webhook_deliveries_due", table_name="api_webhook_deliveries")
    op.drop_index("ix_api_webhook_deliveries_tenant_id", table_name="api_webhook_deliveries")
    op.drop_table("api_webhook_deliveries")
    op.drop_index("ix_api_webhooks_tenant_id", table_name="api_webhooks")
    op.drop_table("api_webhooks")
    op.drop_table("api_idempotency")
    op.drop_index("ix_api_subjects_tenant_id", table_name="api_subjects")
    op.drop_table("api_subjects")
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("api_tenants")
