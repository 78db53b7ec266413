"""Planner statistics: the hourly job lets SQLite read the queue's first page in order off a queue index."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import insert

from hotline.clock import now
from hotline.models import Ticket
from hotline.web.queue import QueueFilters, rows_query
from workers import jobs


def _add_tickets(runtime, count: int) -> None:
    """Insert `count` tickets, one in eight of them open, as a backlog of mostly closed tickets."""
    instant = now()
    picker = random.Random(7)
    rows = [
        {"number": f"QP-20261207-{index:04d}", "channel": "phone", "source": "resident", "category": "consultation",
         "needs": [], "flags": [], "tags": [], "priority": picker.randint(1, 4), "queue_rank": 100,
         "priority_reasons": [], "rule_trace": [], "status": "new" if index % 8 == 0 else "closed",
         "due_at": instant + timedelta(minutes=picker.randint(0, 1000)), "created_at": instant,
         "updated_at": instant}
        for index in range(count)
    ]
    with runtime.engine.begin() as connection:
        connection.execute(insert(Ticket.__table__), rows)


def _queue_plan(runtime) -> list[str]:
    sql = str(rows_query(QueueFilters()).compile(runtime.engine, compile_kwargs={"literal_binds": True}))
    with runtime.engine.connect() as connection:
        return [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


def test_statistics_end_queue_sort(runtime, monkeypatch):
    monkeypatch.setattr(jobs, "current", lambda: runtime)
    _add_tickets(runtime, 400)
    before = _queue_plan(runtime) if runtime.engine.dialect.name == "sqlite" else []

    refreshed = jobs.refresh_statistics()

    if runtime.engine.dialect.name != "sqlite":
        assert refreshed == 0
        return
    assert refreshed == 1
    after = _queue_plan(runtime)
    assert any("TEMP B-TREE" in step for step in before), before
    assert not any("TEMP B-TREE" in step for step in after), after
    assert any("ix_ticket_open_queue" in step or "ix_ticket_queue_order" in step for step in after), after
