"""index calls by caller and start, for the caller history that intake reads

Revision ID: 26b47227405f
Revises: 7c66faf1e56b
Create Date: 2026-12-05 07:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "26b47227405f"
down_revision: str | Sequence[str] | None = "7c66faf1e56b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.create_index("ix_call_from_phone_started", ["from_phone", "started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_from_phone_started")
