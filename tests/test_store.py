"""Pooled PostgreSQL connections: one whose server process ended is replaced at checkout, even right after use."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from hotline import store, tokens
from hotline.clock import now


@pytest.fixture
def engine(postgres_database_url):
    engine = store.make_engine(postgres_database_url)
    yield engine
    engine.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(postgres_database_url, pid: int) -> None:
    admin = store.make_engine(postgres_database_url)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            connection.commit()
    finally:
        admin.dispose()


def test_connection_that_died_is_replaced(engine, postgres_database_url):
    dead = _backend_pid(engine)
    _terminate(postgres_database_url, dead)

    replacement = _backend_pid(engine)

    assert replacement != dead


def test_token_lookup_after_connection_died(engine, postgres_database_url):
    _terminate(postgres_database_url, _backend_pid(engine))

    assert tokens.identify(engine, "hl_unknown", now()) is None
