"""Advisory locks: held to the end of a transaction, or to the end of the block on an autocommit connection."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from hotline import locks

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _free(runtime) -> bool:
    """Try the lock (1, 42) from another connection, and release it at once when that succeeds."""
    with runtime.engine.connect() as other:
        acquired = other.execute(text("SELECT pg_try_advisory_lock(1, 42)")).scalar_one()
        if acquired:
            other.execute(text("SELECT pg_advisory_unlock(1, 42)"))
        return acquired


def test_lock_held_until_commit(runtime):
    with runtime.transaction() as session:
        with locks.serialised(session, 1, 42):
            inside = _free(runtime)
        after_block = _free(runtime)

    assert not inside
    assert not after_block
    assert _free(runtime)


def test_autocommit_lock_released_after_block(runtime):
    connection = runtime.request_connection()
    try:
        with Session(connection.connection) as session:
            with locks.serialised(session, 1, 42):
                inside = _free(runtime)
            after_block = _free(runtime)
    finally:
        connection.close()

    assert not inside
    assert after_block
