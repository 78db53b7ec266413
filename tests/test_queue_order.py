"""The queue's order: a ticket with no running clock comes last in its rank, and on PostgreSQL and
SQLite every queue query can read its page off an index in queue order instead of sorting the open tickets."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
import time_machine
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel, select
from web_helpers import log_in, post_form, refer

import hotline.models  # noqa: F401  (registers the tables)
from hotline import tickets
from hotline.models import Ticket
from hotline.vocabulary import OPEN_STATUSES
from hotline.web.queue import QueueFilters, count_query, rows_query

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
ROW_NUMBER = re.compile(r'<tr data-number="(QP-\d{8}-\d{4})"')
QUEUE_INDEXES = {"ix_ticket_open_queue", "ix_ticket_queue_order"}
SQLITE_NULLS_LAST_TERMS = "(priority, queue_rank, due_at IS NULL, due_at, created_at, id)"


@pytest.fixture
def operator(client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "operator").status_code == 302
    return client


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_waiting_ticket_comes_last_in_rank(operator, runtime, seeded):
    waiting = refer(operator, seeded["community_worker"], "A")
    second = refer(operator, seeded["community_worker"], "B")
    third = refer(operator, seeded["community_worker"], "C")
    post_form(operator, f"/tickets/{waiting}/status", {"to": "waiting", "reason": "等待家属回电"})

    page = operator.get("/").get_data(as_text=True)
    fragment = operator.get("/queue/rows").get_data(as_text=True)
    items = operator.get("/api/v1/tickets?status=open",
                         headers={"Authorization": f"Bearer {seeded['operator']}"}).get_json()["items"]

    with runtime.transaction() as session:
        assert session.exec(select(Ticket.due_at).where(Ticket.number == waiting)).one() is None
    assert ROW_NUMBER.findall(page) == [second, third, waiting]
    assert ROW_NUMBER.findall(fragment) == [second, third, waiting]
    assert [item["number"] for item in items] == [second, third, waiting]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_queue_row_names_its_assignee(operator, seeded):
    claimed = refer(operator, seeded["community_worker"], "A")
    post_form(operator, f"/tickets/{claimed}/claim")

    fragment = operator.get("/queue/rows").get_data(as_text=True)

    assert "话务员 王丽" in fragment
    assert f'aria-label="签收 {claimed}"' not in fragment


def _explain(url: str, statement) -> dict:
    """Plan `statement` with its parameters bound, as the app sends it, with scans and sorts priced out.

    PostgreSQL still sorts when no index has the rows in the requested order, so a plan without a Sort
    node shows that an index provides the order.
    """
    engine = create_engine(url)
    try:
        compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
        with engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            connection.exec_driver_sql("SET enable_sort = off")
            plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    finally:
        engine.dispose()
    return plan[0]["Plan"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


QUEUE_QUERIES = {
    "queue page": rows_query(QueueFilters()),
    "queue of one town and priority": rows_query(QueueFilters(priority=2, town="310118103")),
    "ticket list": select(Ticket).order_by(*tickets.queue_order()).limit(51),
    "open ticket list": select(Ticket).where(tickets.is_open()).order_by(*tickets.queue_order()).limit(51),
}


@pytest.mark.parametrize("name", QUEUE_QUERIES)
def test_queue_query_reads_an_index_in_queue_order(postgres_database_url, name):
    nodes = list(_nodes(_explain(postgres_database_url, QUEUE_QUERIES[name])))

    assert not {node["Node Type"] for node in nodes} & {"Sort", "Incremental Sort"}
    assert {node.get("Index Name") for node in nodes} & QUEUE_INDEXES


def test_queue_of_one_status_sorts_only_ties(postgres_database_url):
    """ix_ticket_queue (status, priority, queue_rank, due_at) may serve one status, followed by an
    Incremental Sort that orders only the tickets that tie on all four columns."""
    nodes = list(_nodes(_explain(postgres_database_url, rows_query(QueueFilters(status="waiting")))))
    incremental = [node for node in nodes if node["Node Type"] == "Incremental Sort"]

    assert "Sort" not in {node["Node Type"] for node in nodes}
    assert {node.get("Index Name") for node in nodes} & (QUEUE_INDEXES | {"ix_ticket_queue"})
    for node in incremental:
        assert [key.rsplit(".", 1)[-1] for key in node["Presorted Key"]][:3] == ["priority", "queue_rank", "due_at"]


def test_open_queue_page_uses_the_partial_index(postgres_database_url):
    nodes = list(_nodes(_explain(postgres_database_url, rows_query(QueueFilters()))))

    assert "ix_ticket_open_queue" in {node.get("Index Name") for node in nodes}


def test_open_queue_count_reads_only_the_partial_index(postgres_database_url):
    nodes = list(_nodes(_explain(postgres_database_url, count_query(QueueFilters()))))

    assert [node["Index Name"] for node in nodes if "Index Name" in node] == ["ix_ticket_open_queue"]
    assert "Seq Scan" not in {node["Node Type"] for node in nodes}


def test_partial_index_names_the_open_statuses(postgres_database_url):
    engine = create_engine(postgres_database_url)
    try:
        with engine.connect() as connection:
            definition = connection.execute(text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_ticket_open_queue'")).scalar_one()
    finally:
        engine.dispose()

    for status in OPEN_STATUSES:
        assert f"'{status}'" in definition
    assert "(priority, queue_rank, due_at, created_at, id)" in definition


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    engine = create_engine(url)
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    return url


# The index each queue query reads on SQLite: the partial one wherever the query selects open tickets.
SQLITE_QUEUE_INDEXES = {
    "queue page": "ix_ticket_open_queue",
    "queue of one town and priority": "ix_ticket_open_queue",
    "ticket list": "ix_ticket_queue_order",
    "open ticket list": "ix_ticket_open_queue",
}


def _sqlite_plan(url: str, statement, index: str) -> list[str]:
    """Return the EXPLAIN QUERY PLAN details of `statement` as the app sends it, read INDEXED BY `index`.

    Which index SQLite picks depends on its statistics, so the test names the index. SQLite raises
    "no query solution" when the query's WHERE terms do not let it use that partial index, and it adds
    a "USE TEMP B-TREE FOR ORDER BY" step when the index does not hold the ORDER BY.
    """
    engine = create_engine(url)
    try:
        compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
        sql = str(compiled).replace("FROM ticket", f"FROM ticket INDEXED BY {index}", 1)
        parameters = tuple(compiled.params[name] for name in compiled.positiontup)
        with engine.connect() as connection:
            return [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", QUEUE_QUERIES)
def test_sqlite_queue_query_needs_no_sort(sqlite_url, name):
    index = SQLITE_QUEUE_INDEXES[name]
    details = _sqlite_plan(sqlite_url, QUEUE_QUERIES[name], index)

    assert not [detail for detail in details if detail.startswith("USE TEMP B-TREE")]
    assert any(f"INDEX {index}" in detail for detail in details)


def test_sqlite_queue_indexes_put_nulls_last(sqlite_url):
    engine = create_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            definitions = dict(connection.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE name IN ('ix_ticket_open_queue', 'ix_ticket_queue_order')"
            )).all())
    finally:
        engine.dispose()

    assert SQLITE_NULLS_LAST_TERMS in definitions["ix_ticket_open_queue"]
    assert SQLITE_NULLS_LAST_TERMS in definitions["ix_ticket_queue_order"]
    for status in OPEN_STATUSES:
        assert f"'{status}'" in definitions["ix_ticket_open_queue"]
