"""Database engine and sessions.

PostgreSQL connections are pinged at every checkout (`pool_pre_ping`). Intake runs its statements on
psycopg directly (hotline.driver_sql), where SQLAlchemy never sees a lost connection, so a connection whose
server process ended must be replaced before use, even one returned to the pool a moment ago. API
requests take theirs from a second pool without the ping (`make_request_engine`), whose first statement
does the checking instead (hotline.request_connection).

SQLite gets `BEGIN IMMEDIATE` for every transaction: its default deferred transactions fail with
"database is locked" when two readers both try to upgrade to writers, which is exactly what two
duplicate referrals arriving at once do. Immediate transactions queue behind the busy timeout instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_SECONDS = 30
# Rows ANALYZE reads per index: SQLite's documentation suggests 100 to 1000, enough for the planner's choices.
SQLITE_ANALYSIS_LIMIT = 400


def make_engine(database_url: str) -> Engine:
    """Create an engine for `database_url`, creating the SQLite file's folder when needed."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
    _use_immediate_transactions(engine)
    return engine


def make_request_engine(database_url: str | URL) -> Engine:
    """Create the PostgreSQL engine of hotline.request_connection: autocommit, and no ping at checkout."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("request connections are for PostgreSQL only")
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_size=10, max_overflow=20)


def _use_immediate_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, open transactions, so BEGIN IMMEDIATE below takes effect.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def refresh_planner_statistics(engine: Engine) -> bool:
    """Run ANALYZE on a SQLite database, reading at most SQLITE_ANALYSIS_LIMIT rows of each index.

    Without statistics, SQLite 3.40 serves the operators' queue from the status index and sorts every open
    ticket, instead of reading the first page off the partial queue index. Return False, doing nothing, on
    PostgreSQL, whose autovacuum keeps its statistics.
    """
    if not is_sqlite(engine):
        return False
    with engine.begin() as connection:
        connection.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
        connection.exec_driver_sql("ANALYZE")
    return True


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """Yield a session whose work commits on success and rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
