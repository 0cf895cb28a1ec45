"""safe to post: the guild's NSFW policy and the audit rows of blocked pictures

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "nsfw_policy",
                sqlmodel.sql.sqltypes.AutoString(length=32),
                nullable=False,
                server_default="block",
            )
        )
    op.create_table(
        "blocked_pictures",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("guild_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("blocked_pictures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blocked_pictures_guild_id"), ["guild_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_blocked_pictures_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blocked_pictures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blocked_pictures_order_id"))
        batch_op.drop_index(batch_op.f("ix_blocked_pictures_guild_id"))
    op.drop_table("blocked_pictures")
    with op.batch_alter_table("guild_settings", schema=None) as batch_op:
        batch_op.drop_column("nsfw_policy")
