"""likeness of each picture

Revision ID: 0009
Revises: 0011
Create Date: 2026-11-30

Each delivered picture's likeness to its member (verdict, score, renders made): issue 12, "Pictures".
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("likeness_verdict", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("likeness_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("likeness_tries", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("likeness_tries")
        batch_op.drop_column("likeness_score")
        batch_op.drop_column("likeness_verdict")
