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


def run(*args: str, **extra_env: str):
    return CliRunner().invoke(sla, list(args), env={**ENV, **extra_env})


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
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4h", "--calendar", "moon"], "日历 moon 不存在"),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4h", "--pause", "2026-03-06T17:00:00+08:00"],
     "START/END"),
])
def test_deadline_rejects_bad_input(args, problem):
    result = run("deadline", *args)

    assert result.exit_code == 2
    assert problem in result.stderr


@pytest.mark.parametrize("args, problem", [
    (["--start", "2026-03-06T16:00:00", "--duration", "4h"], "The time 2026-03-06T16:00:00 has no offset"),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4 hours"], "Invalid duration 4 hours"),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4h", "--calendar", "moon"],
     "Calendar moon not found; available: 24x7, workday."),
    (["--start", "2026-03-06T16:00:00+08:00", "--duration", "4h",
      "--pause", "2026-03-06T17:00:00+08:00/2026-03-06T16:30:00+08:00"], "ends before it starts"),
])
def test_deadline_rejects_bad_input_in_english(args, problem):
    result = run("deadline", *args, LANG="en_US.UTF-8")

    assert result.exit_code == 2
    assert problem in result.stderr


def test_deadline_rejects_reversed_pause():
    result = run("deadline", "--start", "2026-03-06T16:00:00+08:00", "--duration", "4h",
                 "--pause", "2026-03-06T17:00:00+08:00/2026-03-06T16:30:00+08:00")

    assert result.exit_code == 2
    assert "暂停区间无效：暂停区间 2026-03-06T09:00:00+00:00/2026-03-06T08:30:00+00:00 的结束时间不晚于开始时间" \
        in result.stderr


def test_deadline_output_same_in_english():
    result = run("deadline", "--start", "2027-03-05T16:00:00+08:00", "--duration", "4h", HOTLINE_CLI_LANGUAGE="en")

    assert result.stdout == "2027-03-08T11:30:00+08:00\n"
    assert result.stderr == "(provisional)\n"


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
    assert "时间区间无效：结束时间 2026-03-09T09:00:00+08:00 早于开始时间 2026-03-09T10:00:00+08:00" in result.stderr


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


def test_explain_names_codes_in_each_language(runtime):
    started = datetime.fromisoformat("2026-03-06T16:00:00+08:00")
    with runtime.transaction() as session:
        ticket = Ticket(number="QP-20260306-0101", channel="phone", source="resident", category="consultation")
        session.add(ticket)
        session.flush()
        session.add(SlaClock(ticket_id=ticket.id, target="first_response", policy="enquiry", calendar="workday",
                             duration_seconds=14400, started_at=started, due_at=started))

    chinese = run("explain", "QP-20260306-0101")
    english = run("explain", "QP-20260306-0101", HOTLINE_CLI_LANGUAGE="en")
    missing = run("explain", "QP-20260306-9999")

    assert chinese.exit_code == 0, chinese.output
    assert chinese.stdout.splitlines()[0].startswith("工单 QP-20260306-0101  P")
    assert "治丧咨询  状态 待受理" in chinese.stdout
    assert "[first_response] 首次响应  负责方 热线  状态 计时中" in chinese.stdout
    assert english.exit_code == 0, english.output
    assert "Consultation  status New" in english.stdout
    assert "[first_response] First response  owner Hotline  state Running" in english.stdout
    assert missing.exit_code == 1
    assert "工单 QP-20260306-9999 不存在。" in missing.stderr
