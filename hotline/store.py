"""Database engine and sessions.

PostgreSQL connections are pinged before use only after sitting idle in the pool. A ping on every checkout
costs a round trip per transaction, and a connection returned a moment ago has just worked.

SQLite gets `BEGIN IMMEDIATE` for every transaction: its default deferred transactions fail with
"database is locked" when two readers both try to upgrade to writers, which is exactly what two
duplicate referrals arriving at once do. Immediate transactions queue behind the busy timeout instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import monotonic

from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

SQLITE_BUSY_TIMEOUT_SECONDS = 30
# Rows ANALYZE reads per index: SQLite's documentation suggests 100 to 1000, enough for the planner's choices.
SQLITE_ANALYSIS_LIMIT = 400
# Idle time after which a pooled connection is pinged at checkout. A connection used more recently is not.
POOL_PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(database_url: str) -> Engine:
    """Create an engine for `database_url`, creating the SQLite file's folder when needed."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_size=10, max_overflow=20)
        _ping_idle_connections(engine)
        return engine

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
    _use_immediate_transactions(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a connection at checkout when it sat idle in the pool for POOL_PING_AFTER_IDLE_SECONDS or more.

    A failed ping makes the pool drop that connection and check out another, as `pool_pre_ping` does. Under
    load, connections return to the pool within milliseconds, so they skip the round trip.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["checked_in_at"] = monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or monotonic() - checked_in_at < POOL_PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError("ping of an idle pooled connection failed") from error


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
