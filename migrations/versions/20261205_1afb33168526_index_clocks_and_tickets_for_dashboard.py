"""index SLA clocks and tickets for the dashboard's period queries

Revision ID: 1afb33168526
Revises: f3f7c504ebb7
Create Date: 2026-12-05 03:45:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1afb33168526"
down_revision: str | Sequence[str] | None = "f3f7c504ebb7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index name, column, partial-index condition), all on table slaclock.
CLOCK_INDEXES = (
    ("ix_sla_clock_breached_at", "breached_at", "breached_at IS NOT NULL"),
    ("ix_sla_clock_met_at", "met_at", "met_at IS NOT NULL"),
    ("ix_sla_clock_first_response_started", "started_at", "target = 'first_response'"),
)


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("slaclock", schema=None) as batch_op:
        for name, column, condition in CLOCK_INDEXES:
            batch_op.create_index(name, [column], unique=False, postgresql_where=sa.text(condition),
                                  sqlite_where=sa.text(condition))


def downgrade() -> None:
    with op.batch_alter_table("slaclock", schema=None) as batch_op:
        for name, _column, _condition in reversed(CLOCK_INDEXES):
            batch_op.drop_index(name)
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_created_at")
