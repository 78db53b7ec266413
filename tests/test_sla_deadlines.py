"""Deadlines and working time on the shipped workday calendar (08:30-17:00 Mon-Fri, China's holidays).

Every case pins exact instants at +08:00: across the 2026 National Day break, on 调休 makeup days,
over plain weekends and into 2027, a year without published holiday dates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.config import DEFAULT_RULES_DIR
from hotline.sla.calendars import load_calendars

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3600
ROOT = Path(__file__).resolve().parent.parent


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def hms(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


@pytest.fixture(scope="module")
def workday():
    return load_calendars(DEFAULT_RULES_DIR / "calendars.yaml", SHANGHAI)["workday"]


@pytest.mark.parametrize("start, seconds, due", [
    # After closing on the eve of the National Day break: the next working day is Thu 8 October.
    ("2026-09-30T17:55:00+08:00", 4 * HOUR, "2026-10-08T12:30:00+08:00"),
    # Friday afternoon into the makeup Saturday 10 October.
    ("2026-10-09T15:00:00+08:00", 4 * HOUR, "2026-10-10T10:30:00+08:00"),
    # Half an hour on Friday, half an hour on Monday.
    ("2026-03-13T16:30:00+08:00", HOUR, "2026-03-16T09:00:00+08:00"),
    ("2026-03-09T14:30:00+08:00", 4 * HOUR, "2026-03-10T10:00:00+08:00"),
    ("2026-03-13T15:00:00+08:00", 8 * HOUR, "2026-03-16T14:30:00+08:00"),
])
def test_deadline_table(workday, start, seconds, due):
    deadline = workday.add(at(start), seconds)

    assert deadline.due_at == at(due)
    assert deadline.provisional is False


@pytest.mark.parametrize("start, end, elapsed", [
    ("2026-03-14T10:00:00+08:00", "2026-03-16T09:00:00+08:00", "00:30:00"),
    # Sunday 20 September 2026 is a makeup workday.
    ("2026-09-20T10:00:00+08:00", "2026-09-21T09:00:00+08:00", "07:30:00"),
    ("2026-03-09T10:00:00+08:00", "2026-03-11T15:00:00+08:00", "22:00:00"),
])
def test_elapsed_table(workday, start, end, elapsed):
    assert hms(workday.elapsed(at(start), at(end)).seconds) == elapsed


def test_unknown_year_is_provisional(workday):
    deadline = workday.add(at("2026-12-31T16:00:00+08:00"), 4 * HOUR)

    assert deadline.due_at == at("2027-01-04T11:30:00+08:00")
    assert deadline.provisional is True
    assert 2027 in workday.missing_years()
    assert workday.knows_year(2026)
    assert not workday.knows_year(2027)


def test_thirty_working_days_skip_whole_weeks(workday):
    start = at("2026-03-02T08:30:00+08:00")
    thirty_days = 30 * (8 * HOUR + 1800)

    deadline = workday.add(start, thirty_days)

    # 2 to 31 March has 22 working days, April 1-10 has 8 (Qingming 4-6 April falls partly on a weekend).
    assert deadline.due_at == at("2026-04-13T17:00:00+08:00")
    assert workday.elapsed(start, deadline.due_at).seconds == thirty_days


def test_timezone_of_the_process_changes_nothing():
    """`hotline sla deadline` in a process whose local zone is UTC gives the same Beijing-time result."""
    environment = {**os.environ, "TZ": "UTC"}
    environment.pop("HOTLINE_TIMEZONE", None)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hotline"), "sla", "deadline", "--start", "2026-09-30T17:55:00+08:00",
         "--duration", "4h"],
        capture_output=True, text=True, env=environment, cwd=ROOT, check=True,
    )

    assert result.stdout.strip() == "2026-10-08T12:30:00+08:00"


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 12, 20)).map(
    lambda value: value.replace(microsecond=0, tzinfo=SHANGHAI))
durations = st.integers(min_value=1, max_value=40 * 8 * HOUR)


@settings(max_examples=300, deadline=None)
@given(start=instants, seconds=durations)
def test_add_then_elapsed_gives_the_duration(workday, start, seconds):
    due = workday.add(start, seconds).due_at

    assert workday.elapsed(start, due).seconds == seconds


@settings(max_examples=300, deadline=None)
@given(start=instants, seconds=durations)
def test_due_is_never_inside_closed_time(workday, start, seconds):
    due = workday.add(start, seconds).due_at

    # The due instant ends working time: the second before it is open, and nothing is due earlier.
    assert workday.is_working_time(due - timedelta(seconds=1))
    assert workday.elapsed(start, due - timedelta(seconds=1)).seconds == seconds - 1
    assert due.tzinfo == UTC
