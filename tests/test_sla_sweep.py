"""The SLA sweep's set-based path on SQLite and PostgreSQL: digests, concurrent sweeps, bad rows, stale checks.

Clocks are inserted directly on the 24x7 calendar with pinned instants, so each test states exactly
which clocks are due at the sweep instant.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

from sqlalchemy import event
from sqlmodel import Session, select

from hotline.models import OutboxMessage, SlaClock, Ticket, TicketEvent
from hotline.queueing import InProcessQueue
from hotline.runtime import build_runtime
from hotline.sla import clocks, digest, sweep

NOW = datetime.fromisoformat("2026-03-10T11:00:00+08:00")


class RecordingQueue:
    """Records enqueued jobs without running them."""

    def __init__(self):
        self.jobs = []

    def enqueue(self, name: str, *args) -> None:
        self.jobs.append((name, args))


def add_clock(runtime, number: str, due_at: datetime, warn_at: datetime | None = None,
              next_check_at: datetime | None = None, target: str = "resolution") -> int:
    """Insert a ticket with one running clock; return the clock's id."""
    with runtime.transaction() as session:
        ticket = Ticket(number=number, channel="phone", source="resident", category="consultation")
        session.add(ticket)
        session.flush()
        clock = SlaClock(ticket_id=ticket.id, target=target, policy="test", calendar="24x7",
                         duration_seconds=4 * 3600, started_at=due_at - timedelta(hours=4), due_at=due_at,
                         warn_at=warn_at, next_check_at=next_check_at or warn_at or due_at)
        session.add(clock)
        session.flush()
        return clock.id


def number(index: int) -> str:
    return f"QP-20260310-{index:04d}"


def notices(runtime, kind: str) -> list[OutboxMessage]:
    with Session(runtime.engine) as session:
        query = select(OutboxMessage).where(OutboxMessage.idempotency_key.startswith(f"sla-{kind}:"))
        return list(session.exec(query.order_by(OutboxMessage.id)))


def events(runtime, kind: str) -> list[TicketEvent]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(TicketEvent).where(TicketEvent.kind == kind).order_by(TicketEvent.id)))


def clock_row(runtime, clock_id: int) -> SlaClock:
    with Session(runtime.engine) as session:
        return session.get(SlaClock, clock_id)


def orphan_clock(runtime, clock_id: int) -> None:
    """Point a clock at a ticket that does not exist, with the foreign-key checks off for this one change."""
    raw = runtime.engine.raw_connection()
    try:
        cursor = raw.cursor()
        sqlite = runtime.engine.dialect.name == "sqlite"
        if sqlite:
            raw.commit()
            cursor.execute("PRAGMA foreign_keys=OFF")
        else:
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(f"UPDATE slaclock SET ticket_id = 999999 WHERE id = {int(clock_id)}")
        raw.commit()
        cursor.execute("PRAGMA foreign_keys=ON" if sqlite else "SET session_replication_role = DEFAULT")
    finally:
        raw.close()


def test_digest_lists_earliest_clocks_and_count(runtime):
    for index in range(12):
        add_clock(runtime, number(index), NOW - timedelta(minutes=60 - index))

    result = sweep.sweep(runtime, now=NOW)

    assert (result.breached, result.warned, result.failed) == (12, 0, 0)
    assert len(events(runtime, "sla_breached")) == 12
    [message] = notices(runtime, "breach")
    assert message.channel == "supervisor"
    assert message.ticket_id is None
    assert "12 项时限已超时，涉及 12 张工单" in message.body
    assert "另有 2 项未列出" in message.body
    listed = re.findall(r"QP-20260310-\d{4}", message.body)
    assert listed == [number(index) for index in range(digest.DIGEST_LIMIT)]
    assert f"{number(0)}「办结」03-10 10:00；" in message.body


def test_single_clock_digest_matches_notice(runtime):
    breached_id = add_clock(runtime, number(1), NOW - timedelta(minutes=5))
    warned_id = add_clock(runtime, number(2), NOW + timedelta(hours=1), warn_at=NOW - timedelta(minutes=1))

    result = sweep.sweep(runtime, now=NOW)

    assert (result.breached, result.warned) == (1, 1)
    [breach] = notices(runtime, "breach")
    [warning] = notices(runtime, "warning")
    with Session(runtime.engine) as session:
        breached = session.get(SlaClock, breached_id)
        warned = session.get(SlaClock, warned_id)
        assert breach.body == clocks.breach_notice_body(session.get(Ticket, breached.ticket_id), breached)
        assert warning.body == clocks.warning_notice_body(session.get(Ticket, warned.ticket_id), warned)
        assert breach.ticket_id == breached.ticket_id
        assert warning.ticket_id == warned.ticket_id
    assert breach.idempotency_key == f"sla-breach:20260310T030000.000000Z:{breached_id}"
    assert warning.idempotency_key == f"sla-warning:20260310T030000.000000Z:{warned_id}"


def test_breach_stamped_and_event_data(runtime):
    due = NOW - timedelta(minutes=30)
    breached_id = add_clock(runtime, number(1), due)
    warn_at = NOW - timedelta(minutes=10)
    warned_id = add_clock(runtime, number(2), NOW + timedelta(hours=2), warn_at=warn_at)

    sweep.sweep(runtime, now=NOW)

    breached = clock_row(runtime, breached_id)
    assert breached.breached_at == due
    assert breached.next_check_at == due
    warned = clock_row(runtime, warned_id)
    assert warned.warned_at == NOW
    assert warned.next_check_at == warned.due_at
    [breach_event] = events(runtime, "sla_breached")
    assert breach_event.data == {"target": "resolution", "due_at": "2026-03-10T10:30:00+08:00"}
    assert (breach_event.at, breach_event.actor) == (NOW, "system")
    [warning_event] = events(runtime, "sla_warning")
    assert warning_event.data == {"target": "resolution", "owner": "hotline", "warn_at": "2026-03-10T10:50:00+08:00",
                                  "due_at": "2026-03-10T13:00:00+08:00"}


def test_concurrent_sweeps_flag_each_clock_once(runtime, settings, monkeypatch):
    monkeypatch.setattr(sweep, "BATCH_SIZE", 7)
    monkeypatch.setattr(digest, "DIGEST_LIMIT", 100)
    for index in range(20):
        add_clock(runtime, number(index), NOW - timedelta(minutes=index + 1))
    for index in range(20, 40):
        add_clock(runtime, number(index), NOW + timedelta(hours=1), warn_at=NOW - timedelta(minutes=index))
    first = build_runtime(settings, queue=InProcessQueue())
    second = build_runtime(settings, queue=InProcessQueue())
    second_may_start = threading.Event()
    if runtime.engine.dialect.name == "postgresql":
        hold_first_until_second_claims(first, second, second_may_start)
    else:
        # BEGIN IMMEDIATE makes the second sweep wait for the first one's commit before it reads anything.
        second_may_start.set()
    results = {}

    def run_first():
        results["first"] = sweep.sweep(first, now=NOW)

    def run_second():
        if second_may_start.wait(timeout=10):
            results["second"] = sweep.sweep(second, now=NOW)

    threads = [threading.Thread(target=run_first), threading.Thread(target=run_second)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        first.engine.dispose()
        second.engine.dispose()

    assert set(results) == {"first", "second"}
    assert sum(result.breached for result in results.values()) == 20
    assert sum(result.warned for result in results.values()) == 20
    assert sum(result.failed for result in results.values()) == 0
    assert sorted(event.ticket_id for event in events(runtime, "sla_breached")) == list(range(1, 21))
    assert sorted(event.ticket_id for event in events(runtime, "sla_warning")) == list(range(21, 41))
    breach_text = "".join(message.body for message in notices(runtime, "breach"))
    warning_text = "".join(message.body for message in notices(runtime, "warning"))
    assert sorted(re.findall(r"QP-20260310-\d{4}", breach_text)) == [number(index) for index in range(20)]
    assert sorted(re.findall(r"QP-20260310-\d{4}", warning_text)) == [number(index) for index in range(20, 40)]


def hold_first_until_second_claims(first, second, second_may_start: threading.Event) -> None:
    """Keep the first sweep's transaction open after its first claim until the second sweep claims too.

    The second sweep then reads the same due clocks (the first has not committed) and its claim waits
    on the first one's row locks, which is the race the conditional UPDATE has to win.
    """
    second_claiming = threading.Event()

    @event.listens_for(first.engine, "after_cursor_execute")
    def _after(_connection, _cursor, statement, *_args):
        if statement.startswith("UPDATE slaclock") and not second_may_start.is_set():
            second_may_start.set()
            second_claiming.wait(timeout=10)
            # Give the second claim time to reach the row lock it waits for.
            threading.Event().wait(0.3)

    @event.listens_for(second.engine, "before_cursor_execute")
    def _before(_connection, _cursor, statement, *_args):
        if statement.startswith("UPDATE slaclock"):
            second_claiming.set()


def test_bad_clock_among_many_is_pushed_back(runtime, monkeypatch):
    monkeypatch.setattr(digest, "DIGEST_LIMIT", 100)
    ids = [add_clock(runtime, number(index), NOW - timedelta(minutes=index + 1)) for index in range(9)]
    orphan_clock(runtime, ids[4])

    result = sweep.sweep(runtime, now=NOW)

    assert (result.breached, result.warned, result.failed) == (8, 0, 1)
    broken = clock_row(runtime, ids[4])
    assert broken.breached_at is None
    assert broken.next_check_at == NOW + sweep.RETRY_DELAY
    assert len(events(runtime, "sla_breached")) == 8
    listed = re.findall(r"QP-20260310-\d{4}", "".join(message.body for message in notices(runtime, "breach")))
    assert sorted(listed) == [number(index) for index in range(9) if index != 4]
    assert sweep.sweep(runtime, now=NOW + timedelta(minutes=1)).failed == 0


def test_stale_next_check_moves_forward(runtime):
    warn_at = NOW + timedelta(hours=1)
    clock_id = add_clock(runtime, number(1), NOW + timedelta(hours=3), warn_at=warn_at,
                         next_check_at=NOW - timedelta(hours=1))

    result = sweep.sweep(runtime, now=NOW)

    assert (result.breached, result.warned, result.failed) == (0, 0, 0)
    assert clock_row(runtime, clock_id).next_check_at == warn_at
    assert events(runtime, "sla_warning") == []
    assert notices(runtime, "warning") == []


def test_statements_do_not_grow_with_due_clocks(settings):
    queue = RecordingQueue()
    counted = build_runtime(settings, queue=queue)
    try:
        for index in range(3):
            add_clock(counted, number(index), NOW - timedelta(minutes=10))
        for index in range(3, 63):
            add_clock(counted, number(index), NOW + timedelta(minutes=10))
        sweep.sweep(counted, now=NOW - timedelta(hours=1))
        statements = []
        event.listen(counted.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

        few = sweep.sweep(counted, now=NOW)
        few_statements = len(statements)
        statements.clear()
        many = sweep.sweep(counted, now=NOW + timedelta(minutes=20))
    finally:
        counted.engine.dispose()

    assert (few.breached, many.breached) == (3, 60)
    assert len(statements) == few_statements
    assert [name for name, _ in queue.jobs] == ["deliver_message", "deliver_message"]


def test_longest_digest_under_500_characters():
    longest_label = max(clocks.TARGET_LABELS, key=lambda target: len(clocks.TARGET_LABELS[target]))
    flagged = [digest.FlaggedClock(clock_id=index, ticket_id=index, number=number(index), target=longest_label,
                                   owner="agency", warn_at=None, due_at=NOW + timedelta(minutes=index))
               for index in range(10_000)]

    for kind in (digest.BREACH, digest.WARNING):
        body = digest.digest_body(kind, flagged)
        assert len(body) < 500, body
        assert "另有 9990 项未列出" in body
