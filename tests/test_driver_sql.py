"""SELECTs run straight on psycopg: the compiled text, its own IN list values, and the row it returns."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, create_engine, select

from hotline.driver_sql import driver_statement, fetch_one
from hotline.models import Town

QUERY = select(Town.name).where(Town.code == bindparam("code")).where(Town.pilot.in_([True, False]))


def test_driver_statement_expands_constant_list():
    prepared = driver_statement(QUERY, ("code",))

    assert "%(code)s" in prepared.text
    assert "POSTCOMPILE" not in prepared.text
    assert sorted(prepared.constants.values()) == [False, True]


def test_fetch_one_returns_row(postgres_database_url):
    engine = create_engine(postgres_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(Town.__table__.insert(), {"code": "999999901", "name": "测试镇", "pilot": True})
            found = fetch_one(connection, QUERY, {"code": "999999901"})
            missing = fetch_one(connection, QUERY, {"code": "999999999"})
            connection.rollback()
    finally:
        engine.dispose()

    assert found == ("测试镇",)
    assert missing is None


@pytest.mark.parametrize("names", [("code",), ("code", "extra")])
def test_driver_statement_cached_per_names(names):
    assert driver_statement(QUERY, names) is driver_statement(QUERY, names)
