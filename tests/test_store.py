"""Pooled PostgreSQL connections: pinged at checkout only after sitting idle, replaced when the ping fails."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from hotline import store


@pytest.fixture
def engine(postgres_database_url):
    engine = store.make_engine(postgres_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine, monkeypatch):
    """Count the pings the engine's dialect sends."""
    sent = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        sent.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return sent


def _backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_recently_used_connection_is_not_pinged(engine, pings):
    first = _backend_pid(engine)

    second = _backend_pid(engine)

    assert second == first
    assert pings == []


def test_idle_connection_is_pinged(engine, pings, monkeypatch):
    _backend_pid(engine)
    monkeypatch.setattr(store, "POOL_PING_AFTER_IDLE_SECONDS", 0.0)

    _backend_pid(engine)

    assert len(pings) == 1


def test_idle_connection_that_died_is_replaced(engine, postgres_database_url, monkeypatch):
    dead = _backend_pid(engine)
    admin = store.make_engine(postgres_database_url)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
            connection.commit()
    finally:
        admin.dispose()
    monkeypatch.setattr(store, "POOL_PING_AFTER_IDLE_SECONDS", 0.0)

    replacement = _backend_pid(engine)

    assert replacement != dead
