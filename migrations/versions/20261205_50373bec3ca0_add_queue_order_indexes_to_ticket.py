"""add queue order indexes to ticket

The operators' queue and the ticket list sort by priority, queue rank, due instant, creation and id.
A partial index over open tickets and a full index over all tickets hold that order, so the first page
is read off an index instead of sorting every open ticket.

Revision ID: 50373bec3ca0
Revises: 6219a2620950
Create Date: 2026-12-05 01:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "50373bec3ca0"
down_revision: str | Sequence[str] | None = "6219a2620950"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_COLUMNS = ["priority", "queue_rank", "due_at", "created_at", "id"]
OPEN_TICKET_PREDICATE = "status IN ('new', 'in_progress', 'dispatching', 'dispatched', 'waiting')"


def upgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.create_index("ix_ticket_open_queue", QUEUE_COLUMNS, unique=False,
                              postgresql_where=sa.text(OPEN_TICKET_PREDICATE),
                              sqlite_where=sa.text(OPEN_TICKET_PREDICATE))
        batch_op.create_index("ix_ticket_queue_order", QUEUE_COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_queue_order")
        batch_op.drop_index("ix_ticket_open_queue")
