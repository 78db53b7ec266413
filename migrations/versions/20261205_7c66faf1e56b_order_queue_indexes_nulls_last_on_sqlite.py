"""order the queue indexes with NULLs last on SQLite

The queue orders due_at ascending with NULLs last. PostgreSQL's ascending indexes keep NULLs last, but
SQLite's keep them first, so SQLite sorted every open ticket for each queue page. On SQLite the two queue
indexes are rebuilt on `due_at IS NULL, due_at`, the terms the queue's ORDER BY renders there. PostgreSQL
is left as it is.

Revision ID: 7c66faf1e56b
Revises: 1afb33168526
Create Date: 2026-12-05 03:50:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c66faf1e56b"
down_revision: str | Sequence[str] | None = "1afb33168526"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLAIN_COLUMNS = ["priority", "queue_rank", "due_at", "created_at", "id"]
NULLS_LAST_TERMS = ["priority", "queue_rank", sa.text("due_at IS NULL"), "due_at", "created_at", "id"]
OPEN_TICKET_PREDICATE = "status IN ('new', 'in_progress', 'dispatching', 'dispatched', 'waiting')"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        rebuild_queue_indexes(NULLS_LAST_TERMS)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        rebuild_queue_indexes(PLAIN_COLUMNS)


def rebuild_queue_indexes(terms: list) -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_queue_order")
        batch_op.drop_index("ix_ticket_open_queue")
        batch_op.create_index("ix_ticket_open_queue", terms, unique=False,
                              sqlite_where=sa.text(OPEN_TICKET_PREDICATE))
        batch_op.create_index("ix_ticket_queue_order", terms, unique=False)
