"""add merged_into to ticket

Revision ID: ca76c5eb885a
Revises: c02322bf52f7
Create Date: 2026-12-05 00:50:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ca76c5eb885a"
down_revision: str | Sequence[str] | None = "c02322bf52f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_ticket_merged_into_id", ["merged_into_id"], unique=False)
        batch_op.create_foreign_key("fk_ticket_merged_into_id_ticket", "ticket", ["merged_into_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ticket_merged_into_id_ticket", type_="foreignkey")
        batch_op.drop_index("ix_ticket_merged_into_id")
        batch_op.drop_column("merged_into_id")
