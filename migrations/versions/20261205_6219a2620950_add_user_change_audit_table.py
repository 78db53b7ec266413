"""add user change audit table

Revision ID: 6219a2620950
Revises: ca76c5eb885a
Create Date: 2026-12-05 00:51:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "6219a2620950"
down_revision: str | Sequence[str] | None = "ca76c5eb885a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "userchange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("remote_addr", sqlmodel.sql.sqltypes.AutoString(length=45), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("userchange", schema=None) as batch_op:
        batch_op.create_index("ix_userchange_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("userchange", schema=None) as batch_op:
        batch_op.drop_index("ix_userchange_user_id")

    op.drop_table("userchange")
