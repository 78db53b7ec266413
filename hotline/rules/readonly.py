"""Database access for commands that only read: rule set versions and the replay of stored tickets."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import create_engine

from hotline.validation import N_, TemplatedError

SQLITE_BUSY_TIMEOUT_SECONDS = 30


class DatabaseMissing(TemplatedError, LookupError):
    """The SQLite file of the database URL does not exist."""


def read_only_engine(database_url: str) -> Engine:
    """Create an engine whose connections reject every write.

    SQLite connections run `PRAGMA query_only`, and they open ordinary deferred transactions rather than
    the `BEGIN IMMEDIATE` of hotline.store, so a long read takes no write lock from the running service.
    PostgreSQL sessions start with `default_transaction_read_only` on. A missing SQLite file raises
    DatabaseMissing instead of being created empty.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"})

    if not url.database or url.database == ":memory:" or not Path(url.database).is_file():
        raise DatabaseMissing(N_("Database file not found: %(path)s"), path=url.database)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _query_only(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    return engine
