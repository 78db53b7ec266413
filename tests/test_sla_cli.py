"""`hotline sla` commands: deadline and elapsed on the shipped calendars, and one breach sweep."""

from __future__ import annotations

from datetime import datetime

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from hotline.cli.sla import sla
from hotline.config import DEFAULT_RULES_DIR
from hotline.models import SlaClock, Ticket

ENV = {"HOTLINE_RULES_DIR": str(DEFAULT_RULES_DIR)}


def run(*args: str):
    return CliRunner().invoke(sla, list(args), env=ENV)


def test_deadline_prints_local_instant():
    result = run("deadline", "--start", "2026-03-06T16:00:00+08:00", "--duration", "4h", "--calendar", "workday")

    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-03-09T11:30:00+08:00\n"
    assert result.stderr == ""


def test_deadline_accepts_utc_start():
    result = run("deadline", "--start", "2026-02-13T08:00:00Z", "--duration", "4h")

    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-02-14T11:30:00+08:00\n"


def test_deadline_with_pause_over_weekend():
    result = run("deadline", "--start", "2026-03-06T16:00:00+08:00", "--duration", "4h",
                 "--pause", "2026-03-06T16:30:00+08:00/2026-03-09T09:00:00+08:00")

    assert result.exit_code == 0, result.output
    assert result.stdout == "2026-03-09T12:30:00+08:00\n"


def test_deadline_on_24x7():
    result = run("deadline", "--start", "2026-03-07T23:00:00+08:00", "--duration", "4h", "--calendar", "24x7")

    assert result.stdout == "2026-03-08T03:00:00+08:00\n"


def test_deadline_in_unknown_year_is_provisional():
    result = run("deadline", "--start", "2027-03-05T16:00:00+08:00", "--duration", "4h")

    assert result.exit_code == 0, result.output
    assert result.stdout == "2027-03-08T11:30:00+08:00\n"
    assert result.stderr == "(provisional)\n"


@pytest.mark.parametrize("args, problem", [
    (["--start", "2026-03-06T16:00:00", "--duration", "4h"], "缺少时区偏移"),
    (["--start", "yesterday", "--duration", "4h"], "无效"),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4 hours"], "时长无效"),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4h", "--calendar", "moon"], "日历 'moon' 不存在"),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4h", "--pause", "2026-03-06T17:00:00+08:00"],
     "START/END"),
])
def test_deadline_rejects_bad_input(args, problem):
    result = run("deadline", *args)

    assert result.exit_code == 2
    assert problem in result.stderr


def test_elapsed_prints_hours_minutes_seconds():
    result = run("elapsed", "--start", "2026-03-06T16:00:00+08:00", "--end", "2026-03-09T11:30:05+08:00")

    assert result.exit_code == 0, result.output
    assert result.stdout == "04:00:05\n"


def test_elapsed_over_a_week_exceeds_24_hours():
    result = run("elapsed", "--start", "2026-03-09T08:30:00+08:00", "--end", "2026-03-16T08:30:00+08:00")

    assert result.stdout == "42:30:00\n"


def test_elapsed_rejects_reversed_range():
    result = run("elapsed", "--start", "2026-03-09T10:00:00+08:00", "--end", "2026-03-09T09:00:00+08:00")

    assert result.exit_code == 2
    assert "时间区间无效" in result.stderr


def test_sweep_prints_flagged_count(runtime):
    started = datetime.fromisoformat("2026-03-06T16:00:00+08:00")
    with runtime.transaction() as session:
        ticket = Ticket(number="QP-20260306-0100", channel="phone", source="resident", category="consultation")
        session.add(ticket)
        session.flush()
        session.add(SlaClock(ticket_id=ticket.id, target="first_response", policy="enquiry", calendar="workday",
                             duration_seconds=14400, started_at=started, due_at=started))

    first = run("sweep")
    second = run("sweep")

    assert first.exit_code == 0, first.output
    assert first.stdout == "1\n"
    assert second.stdout == "0\n"
    with Session(runtime.engine) as session:
        assert session.exec(select(SlaClock)).one().breached_at == started
