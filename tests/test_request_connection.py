"""Request connections on PostgreSQL: the first statement finds a lost connection and runs again on a new one."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine, event, text
from test_referrals_api import REFERRAL

from hotline import store, tokens
from hotline.clock import now

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _backend_pid(driver: psycopg.Connection) -> int:
    return driver.execute("SELECT pg_backend_pid()").fetchone()[0]


def _terminate(database_url: str, pids: list[int]) -> None:
    admin = store.make_engine(database_url)
    try:
        with admin.connect() as connection:
            for pid in pids:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            connection.commit()
    finally:
        admin.dispose()


def _pooled_pids(runtime, count: int) -> list[int]:
    """Check out `count` request connections at once and return their server process ids.

    The pool then contains that many connections.
    """
    connections = [runtime.request_connection() for _ in range(count)]
    pids = [connection.first_statement(_backend_pid) for connection in connections]
    for connection in connections:
        connection.close()
    return pids


def test_lost_connection_replaced_at_first_statement(runtime, database_url):
    [dead] = _pooled_pids(runtime, 1)
    _terminate(database_url, [dead])

    connection = runtime.request_connection()
    try:
        replacement = connection.first_statement(_backend_pid)
    finally:
        connection.close()

    assert replacement != dead


def test_referrals_after_all_connections_dropped(runtime, client, seeded, database_url):
    dead = _pooled_pids(runtime, 3)
    _terminate(database_url, dead)

    statuses = []
    for number in range(4):
        response = client.post("/api/v1/referrals", json={**REFERRAL, "external_id": f"SG-LOST-{number}"},
                               headers={"Authorization": f"Bearer {seeded['elderly_advisor']}"})
        statuses.append(response.status_code)

    assert statuses == [201] * 4
    assert set(_pooled_pids(runtime, 3)).isdisjoint(dead)


def test_statement_error_raised_and_connection_kept(runtime):
    connection = runtime.request_connection()
    try:
        pid = connection.first_statement(_backend_pid)
        with pytest.raises(psycopg.errors.UndefinedTable):
            connection.first_statement(lambda driver: driver.execute("SELECT * FROM no_such_table"))

        assert connection.first_statement(_backend_pid) == pid
    finally:
        connection.close()


def test_lookup_and_referral_share_connection(runtime, seeded):
    connection = runtime.request_connection()
    try:
        identity = tokens.identify(runtime.engine, seeded["community_worker"], now(), connection)
        with runtime.transaction(one_write=True, connection=connection) as session:
            driver = session.connection().connection.driver_connection

        assert identity.source == "community_worker"
        assert driver is connection.driver
    finally:
        connection.close()


def test_referral_committed_in_autocommit_mode(runtime, client, seeded):
    response = client.post("/api/v1/referrals", json=REFERRAL,
                           headers={"Authorization": f"Bearer {seeded['elderly_advisor']}"})

    with runtime.engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM ticket WHERE number = :number"),
                                    {"number": response.get_json()["number"]}).scalar_one()
    assert response.status_code == 201
    assert stored == 1


def test_rule_set_version_stored_once(runtime, client, seeded):
    headers = {"Authorization": f"Bearer {seeded['elderly_advisor']}"}
    client.post("/api/v1/referrals", json={**REFERRAL, "external_id": "SG-VERSION-1"}, headers=headers)
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - cursor execute hook: (conn, cursor, text, ...)
    event.listen(Engine, "before_cursor_execute", listener)
    try:
        response = client.post("/api/v1/referrals", json={**REFERRAL, "external_id": "SG-VERSION-2"}, headers=headers)
    finally:
        event.remove(Engine, "before_cursor_execute", listener)

    assert response.status_code == 201
    assert not [statement for statement in statements if "rulesetversion" in statement]
