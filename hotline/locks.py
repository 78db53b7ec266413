"""Advisory locks that serialise a rare read-then-write on PostgreSQL, such as recording a changed resend.

SQLite needs none: its engine opens every transaction with BEGIN IMMEDIATE, so writers already run one at
a time from their first read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlmodel import Session

# The first key of each lock names the kind of work, so locks of different kinds do not block each other.
CHANGED_RESEND = 1


@contextmanager
def serialised(session: Session, kind: int, key: int) -> Iterator[None]:
    """Run the body while holding the lock (kind, key), so the next holder reads what the body wrote.

    In a transaction the lock is held until it ends. On an autocommit connection, where each statement
    commits on its own, the body's writes are flushed before the lock is released.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return

    if not connection.connection.driver_connection.autocommit:
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, %s)", (kind, key))
        yield
        return

    connection.exec_driver_sql("SELECT pg_advisory_lock(%s, %s)", (kind, key))
    try:
        yield
        session.flush()
    finally:
        connection.exec_driver_sql("SELECT pg_advisory_unlock(%s, %s)", (kind, key))
