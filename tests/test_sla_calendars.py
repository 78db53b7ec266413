"""Business calendars: deadlines and working time on the shipped calendars, at the edges of each period."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hotline.config import DEFAULT_RULES_DIR
from hotline.rules.expressions import RuleError
from hotline.sla.calendars import add_with_pauses, load_calendars, parse_duration

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3600


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def calendars():
    return load_calendars(DEFAULT_RULES_DIR / "calendars.yaml", SHANGHAI)


@pytest.fixture
def workday(calendars):
    return calendars["workday"]


def write_calendars(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "calendars.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, seconds", [
    ("15m", 900), ("4h", 4 * HOUR), ("8h30m", 8 * HOUR + 1800), ("90s", 90), ("2d", 48 * HOUR),
    (" 1d2h3m4s ", 93784),
])
def test_parse_duration_accepts(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "4", "h", "30m8h", "4 h", "-4h", "0m", "1.5h", "4H"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_friday_afternoon_rolls_to_monday(workday):
    deadline = workday.add(at("2026-03-06T16:00:00+08:00"), 4 * HOUR)

    assert deadline.due_at == at("2026-03-09T11:30:00+08:00")
    assert deadline.due_at.tzinfo == UTC
    assert deadline.provisional is False


def test_spring_festival_eve_lands_on_makeup_saturday(workday):
    deadline = workday.add(at("2026-02-13T16:00:00+08:00"), 4 * HOUR)

    assert deadline.due_at == at("2026-02-14T11:30:00+08:00")


def test_spring_festival_break_is_skipped(workday):
    deadline = workday.add(at("2026-02-14T16:00:00+08:00"), 4 * HOUR)

    assert deadline.due_at == at("2026-02-24T11:30:00+08:00")


def test_makeup_sunday_is_working_day(workday):
    assert workday.add(at("2026-01-04T08:00:00+08:00"), HOUR).due_at == at("2026-01-04T09:30:00+08:00")
    assert workday.add(at("2026-01-03T10:00:00+08:00"), HOUR).due_at == at("2026-01-04T09:30:00+08:00")


def test_start_at_closing_time(workday):
    start = at("2026-03-06T17:00:00+08:00")

    assert workday.add(start, 1).due_at == at("2026-03-09T08:30:01+08:00")
    assert workday.add(start, 4 * HOUR).due_at == at("2026-03-09T12:30:00+08:00")


def test_start_at_opening_time(workday):
    start = at("2026-03-09T08:30:00+08:00")

    assert workday.add(start, 4 * HOUR).due_at == at("2026-03-09T12:30:00+08:00")
    assert workday.add(start, 8 * HOUR + 1800).due_at == at("2026-03-09T17:00:00+08:00")
    assert workday.add(start, 8 * HOUR + 1801).due_at == at("2026-03-10T08:30:01+08:00")


def test_start_before_opening_time(workday):
    assert workday.add(at("2026-03-09T06:00:00+08:00"), 60).due_at == at("2026-03-09T08:31:00+08:00")


def test_zero_seconds_returns_start(workday):
    start = at("2026-03-07T12:00:00+08:00")

    assert workday.add(start, 0).due_at == start


def test_negative_seconds_rejected(workday):
    with pytest.raises(ValueError, match="negative"):
        workday.add(at("2026-03-09T09:00:00+08:00"), -1)


def test_naive_start_rejected(workday):
    with pytest.raises(ValueError, match="time zone"):
        workday.add(datetime(2026, 3, 9, 9, 0), 60)


def test_working_time_periods_are_half_open(workday):
    assert workday.is_working_time(at("2026-03-09T08:30:00+08:00"))
    assert workday.is_working_time(at("2026-03-09T16:59:59+08:00"))
    assert not workday.is_working_time(at("2026-03-09T17:00:00+08:00"))
    assert not workday.is_working_time(at("2026-03-09T08:29:59+08:00"))
    assert not workday.is_working_time(at("2026-03-07T10:00:00+08:00"))
    assert workday.is_working_time(at("2026-02-14T10:00:00+08:00"))
    assert not workday.is_working_time(at("2026-02-16T10:00:00+08:00"))


def test_is_holiday_excludes_plain_weekends(workday):
    assert workday.is_holiday(date(2026, 2, 16))
    assert workday.is_holiday(date(2026, 2, 21))
    assert not workday.is_holiday(date(2026, 3, 7))
    assert not workday.is_holiday(date(2026, 2, 14))
    assert not workday.is_holiday(date(2026, 3, 9))


def test_24x7_crosses_midnight(calendars):
    always = calendars["24x7"]
    deadline = always.add(at("2026-03-07T23:00:00+08:00"), 4 * HOUR)

    assert deadline.due_at == at("2026-03-08T03:00:00+08:00")
    assert always.elapsed(at("2026-03-07T23:00:00+08:00"), at("2026-03-08T03:00:00+08:00")).seconds == 4 * HOUR
    assert always.is_working_time(at("2026-02-16T03:00:00+08:00"))


def test_pause_over_weekend_on_workday(workday):
    start = at("2026-03-06T16:00:00+08:00")
    after_hours = (at("2026-03-06T17:00:00+08:00"), at("2026-03-09T08:30:00+08:00"))
    into_hours = (at("2026-03-06T16:30:00+08:00"), at("2026-03-09T09:00:00+08:00"))

    assert add_with_pauses(workday, start, 4 * HOUR, [after_hours]).due_at == at("2026-03-09T11:30:00+08:00")
    assert add_with_pauses(workday, start, 4 * HOUR, [into_hours]).due_at == at("2026-03-09T12:30:00+08:00")


def test_pause_over_weekend_on_24x7(calendars):
    start = at("2026-03-06T16:00:00+08:00")
    weekend = (at("2026-03-06T18:00:00+08:00"), at("2026-03-09T08:00:00+08:00"))

    deadline = add_with_pauses(calendars["24x7"], start, 4 * HOUR, [weekend])

    assert deadline.due_at == at("2026-03-09T10:00:00+08:00")


def test_pause_after_deadline_ignored(workday):
    start = at("2026-03-09T09:00:00+08:00")
    late = (at("2026-03-09T14:00:00+08:00"), at("2026-03-10T14:00:00+08:00"))

    assert add_with_pauses(workday, start, HOUR, [late]).due_at == at("2026-03-09T10:00:00+08:00")


def test_overlapping_pauses_rejected(workday):
    start = at("2026-03-09T09:00:00+08:00")
    pauses = [(at("2026-03-09T10:00:00+08:00"), at("2026-03-09T11:00:00+08:00")),
              (at("2026-03-09T10:30:00+08:00"), at("2026-03-09T12:00:00+08:00"))]

    with pytest.raises(ValueError, match="overlaps"):
        add_with_pauses(workday, start, HOUR, pauses)


def test_unknown_year_provisional_warns_once(tmp_path, caplog):
    path = write_calendars(tmp_path, """
calendars:
  workday:
    hours: ["08:30-17:00"]
    weekdays: [mon, tue, wed, thu, fri]
    statutory_holidays: chinese_calendar
""")
    workday = load_calendars(path, SHANGHAI)["workday"]

    with caplog.at_level(logging.WARNING, logger="hotline.sla"):
        first = workday.add(at("2027-03-05T16:00:00+08:00"), 4 * HOUR)
        second = workday.elapsed(at("2027-03-05T16:00:00+08:00"), at("2027-03-08T11:30:00+08:00"))

    assert first.due_at == at("2027-03-08T11:30:00+08:00")
    assert first.provisional is True
    assert second == type(second)(seconds=4 * HOUR, provisional=True)
    warnings = [record for record in caplog.records if "2027" in record.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_deadline_into_unknown_year(workday):
    known = workday.add(at("2026-12-31T09:00:00+08:00"), HOUR)
    crossing = workday.add(at("2026-12-31T16:00:00+08:00"), 4 * HOUR)

    assert known.provisional is False
    assert crossing.provisional is True
    # New Year's Day has a fixed date, so it is closed even without the year's published dates.
    assert crossing.due_at == at("2027-01-04T11:30:00+08:00")


def test_year_override_replaces_missing_data(tmp_path):
    path = write_calendars(tmp_path, """
calendars:
  workday:
    hours: ["08:30-17:00"]
    weekdays: [mon, tue, wed, thu, fri]
    statutory_holidays: chinese_calendar
    years:
      2027:
        holidays: [2027-01-01]
        makeup_workdays: [2027-01-02]
""")
    workday = load_calendars(path, SHANGHAI)["workday"]

    deadline = workday.add(at("2026-12-31T16:00:00+08:00"), 4 * HOUR)

    assert deadline.due_at == at("2027-01-02T11:30:00+08:00")
    assert deadline.provisional is False
    assert workday.is_holiday(date(2027, 1, 1))


def test_closures_and_extra_workdays(tmp_path):
    path = write_calendars(tmp_path, """
calendars:
  workday:
    hours: ["08:30-17:00"]
    weekdays: [mon, tue, wed, thu, fri]
    statutory_holidays: chinese_calendar
    closures: [2026-03-09]
    extra_workdays: ["2026-03-07"]
""")
    workday = load_calendars(path, SHANGHAI)["workday"]

    assert workday.add(at("2026-03-06T16:00:00+08:00"), 4 * HOUR).due_at == at("2026-03-07T11:30:00+08:00")
    assert workday.add(at("2026-03-07T16:00:00+08:00"), 4 * HOUR).due_at == at("2026-03-10T11:30:00+08:00")


def test_lunch_break_is_skipped(tmp_path):
    path = write_calendars(tmp_path, """
calendars:
  office:
    hours: ["13:00-17:00", "08:30-11:30"]
    weekdays: [mon, tue, wed, thu, fri]
""")
    office = load_calendars(path, SHANGHAI)["office"]

    assert office.add(at("2026-03-09T11:00:00+08:00"), HOUR).due_at == at("2026-03-09T13:30:00+08:00")
    assert not office.is_working_time(at("2026-03-09T12:00:00+08:00"))
    assert office.elapsed(at("2026-03-09T08:00:00+08:00"), at("2026-03-09T18:00:00+08:00")).seconds == 7 * HOUR


@pytest.mark.parametrize("start", [
    "2026-03-06T16:00:00+08:00", "2026-03-06T17:00:00+08:00", "2026-03-07T03:00:00+08:00",
    "2026-02-13T16:59:59+08:00", "2026-01-04T12:00:00+08:00", "2026-09-30T10:15:30+08:00",
    "2026-03-09T08:30:00.500000+08:00",
])
@pytest.mark.parametrize("seconds", [1, 900, 4 * HOUR, 8 * HOUR + 1800, 5 * (8 * HOUR + 1800)])
def test_elapsed_inverts_add(workday, start, seconds):
    begin = at(start)
    due = workday.add(begin, seconds).due_at

    assert workday.elapsed(begin, due).seconds == seconds
    assert workday.elapsed(begin, due - timedelta(seconds=1)).seconds == seconds - 1


def test_elapsed_rejects_reversed_range(workday):
    with pytest.raises(ValueError, match="before start"):
        workday.elapsed(at("2026-03-09T10:00:00+08:00"), at("2026-03-09T09:00:00+08:00"))


@pytest.mark.parametrize("body, problem", [
    ("calendars: {}", "empty"),
    ("calendars:\n  workday: {hours: ['08:30-25:00'], weekdays: [mon]}", "'08:30-25:00' is invalid"),
    ("calendars:\n  workday: {hours: ['08:30-12:00', '11:00-17:00'], weekdays: [mon]}", "overlap"),
    ("calendars:\n  workday: {hours: ['08:30-17:00'], weekdays: [monday]}", "'monday' is invalid"),
    ("calendars:\n  workday: {hours: ['08:30-17:00'], weekdays: [mon], lunch: 1}", "unknown key 'lunch'"),
    ("calendars:\n  workday: {hours: ['08:30-17:00'], weekdays: [mon], statutory_holidays: holidays}",
     "statutory_holidays 'holidays'"),
    ("calendars:\n  workday: {hours: ['08:30-17:00'], weekdays: [mon], closures: ['2026-02-30']}",
     "'2026-02-30' is invalid"),
    ("calendars:\n  workday: {hours: ['08:30-17:00'], weekdays: [mon], closures: [2026-02-30]}",
     "day is out of range"),
    ("calendars:\n  workday: {hours: ['08:30-17:00'], weekdays: [mon], years: {2027: {holidays: [2028-01-01]}}}",
     "another year"),
    ("calendars: [", "invalid YAML"),
    ("calendars:\n  workday: {label: 12, hours: ['08:30-17:00'], weekdays: [mon]}", "label 12 is invalid"),
    ("calendars:\n  workday: {label_en: '', hours: ['08:30-17:00'], weekdays: [mon]}", "label_en '' is invalid"),
])
def test_invalid_calendar_file_names_problem(tmp_path, body, problem):
    path = write_calendars(tmp_path, body)

    with pytest.raises(RuleError) as raised:
        load_calendars(path, SHANGHAI)

    assert "calendars.yaml" in str(raised.value)
    assert problem in str(raised.value)


def test_missing_calendar_file_names_path(tmp_path):
    with pytest.raises(RuleError, match="cannot be read"):
        load_calendars(tmp_path / "calendars.yaml", SHANGHAI)


def test_calendar_labels_by_language(tmp_path):
    path = write_calendars(tmp_path, "calendars:\n  workday: {label: 工作日, label_en: working-day, "
                                     "hours: ['08:30-17:00'], weekdays: [mon]}\n"
                                     "  night: {hours: ['20:00-24:00'], weekdays: [mon]}")

    calendars = load_calendars(path, SHANGHAI)

    assert calendars["workday"].label("zh") == "工作日"
    assert calendars["workday"].label("en") == "working-day"
    assert calendars["night"].label("zh") == "night", "a calendar without labels is named by its id"
