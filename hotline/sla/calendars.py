"""Business calendars: which instants count towards an SLA deadline, exact to the second.

A calendar has open periods per working day. Periods are half-open, so the end instant is already
closed time. Working days are the regular weekdays, adjusted by China's statutory holidays and 调休
makeup workdays from the `chinesecalendar` package, by per-year lists in calendars.yaml that replace
the package's data, and by local closures and extra working days. A year that neither the package nor
the file covers counts weekends and the fixed-date statutory days only, and every result that touched
such a year is marked provisional.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

from hotline.rules.expressions import RuleError
from hotline.validation import N_, TemplatedError

log = logging.getLogger("hotline.sla")

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY_SOURCES = ("chinese_calendar", "none")
DAY_SECONDS = 24 * 3600
ONE_SECOND = timedelta(seconds=1)
# Statutory days off with a fixed Gregorian date under the 全国年节及纪念日放假办法 (as revised for
# 2025): New Year's Day, Labour Day 1-2 May, National Day 1-3 October. A year without published dates
# counts these and the weekends as closed; lunar holidays and makeup workdays are unknown until then.
FIXED_STATUTORY_DAYS = frozenset({(1, 1), (5, 1), (5, 2), (10, 1), (10, 2), (10, 3)})
# A calendar with no working time in ten years is misconfigured, so scanning stops there with an error.
MAX_SCAN_DAYS = 3660

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_PERIOD = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
_CALENDAR_KEYS = ("label", "label_en", "hours", "weekdays", "statutory_holidays", "years", "closures", "extra_workdays")
_YEAR_KEYS = ("holidays", "makeup_workdays")


@dataclass(frozen=True)
class Deadline:
    due_at: datetime
    provisional: bool


@dataclass(frozen=True)
class Elapsed:
    seconds: int
    provisional: bool


@dataclass(frozen=True)
class YearOverride:
    """Statutory holidays and makeup workdays of one year, as published by the State Council."""

    holidays: frozenset[date]
    makeup_workdays: frozenset[date]


@dataclass(frozen=True)
class _DayInfo:
    working: bool
    holiday: bool
    provisional: bool


class BusinessCalendar:
    """Working periods and working days of one calendar. Methods take aware datetimes and return UTC ones."""

    def __init__(
        self,
        name: str,
        tz: ZoneInfo,
        periods: Sequence[tuple[int, int]],
        weekdays: Iterable[int],
        use_chinese_calendar: bool = False,
        years: dict[int, YearOverride] | None = None,
        closures: Iterable[date] = (),
        extra_workdays: Iterable[date] = (),
        labels: tuple[str | None, str | None] = (None, None),
    ):
        self.name = name
        self.labels = labels
        self.tz = tz
        self.periods = tuple(periods)
        self.weekdays = frozenset(weekdays)
        self.use_chinese_calendar = use_chinese_calendar
        self.years = dict(years or {})
        self.closures = frozenset(closures)
        self.extra_workdays = frozenset(extra_workdays)
        self._days: dict[date, _DayInfo] = {}
        self._day_totals: dict[date, tuple[timedelta, bool]] = {}
        self._intervals: dict[date, tuple[tuple[datetime, datetime], ...]] = {}
        self._week_totals: dict[date, tuple[timedelta, bool]] = {}
        self._warned_years: set[int] = set()
        self._warn_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r})"

    def label(self, language: str) -> str:
        """Return the calendar's name for people in `language` ("zh" or "en"), or its id without one."""
        chinese, english = self.labels
        return (english if language == "en" else chinese) or self.name

    @property
    def always_open(self) -> bool:
        """True when every instant is working time, so deadlines are plain clock arithmetic."""
        return (
            self.periods == ((0, DAY_SECONDS),)
            and len(self.weekdays) == 7
            and not self.use_chinese_calendar
            and not self.years
            and not self.closures
        )

    def add(self, start: datetime, seconds: int) -> Deadline:
        """Return the instant at which `seconds` of working time have passed since `start`.

        The result is the earliest such instant, so a deadline that uses up a period exactly falls on
        the period's end (17:00), not on the next morning. Zero seconds returns `start` itself.
        Whole weeks are skipped with one cached sum each, so a 30-working-day target costs about as
        much as a 1-hour one.
        """
        start = _aware_utc(start, "start")
        if seconds < 0:
            raise ValueError(f"seconds={seconds} is negative: expected zero or more")
        if seconds == 0 or self.always_open:
            return Deadline(due_at=start + timedelta(seconds=seconds), provisional=False)

        remaining = timedelta(seconds=seconds)
        day = start.astimezone(self.tz).date()
        info = self._day_info(day)
        provisional = info.provisional
        found, remaining = self._spend_in_day(day, start, remaining)
        if found is not None:
            return Deadline(due_at=found, provisional=provisional)

        day += timedelta(days=1)
        for _ in range(MAX_SCAN_DAYS):
            if day.weekday() == 0:
                week_seconds, week_provisional = self._week(day)
                if remaining > week_seconds:
                    remaining -= week_seconds
                    provisional = provisional or week_provisional
                    day += timedelta(days=7)
                    continue
            day_seconds, day_provisional = self._full_day(day)
            provisional = provisional or day_provisional
            if remaining > day_seconds:
                remaining -= day_seconds
            else:
                found, remaining = self._spend_in_day(day, None, remaining)
                return Deadline(due_at=found, provisional=provisional)
            day += timedelta(days=1)
        raise ValueError(
            f"calendar {self.name!r} has no working time within {MAX_SCAN_DAYS} days of {start.isoformat()}"
        )

    def elapsed(self, start: datetime, end: datetime) -> Elapsed:
        """Return the working seconds in [start, end), rounded down to whole seconds.

        Full days and full weeks between the two ends are summed from cached totals.
        """
        start = _aware_utc(start, "start")
        end = _aware_utc(end, "end")
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        if self.always_open:
            return Elapsed(seconds=(end - start) // ONE_SECOND, provisional=False)

        day = start.astimezone(self.tz).date()
        last_day = end.astimezone(self.tz).date()
        total, provisional = self._overlap(day, start, end)
        if day == last_day:
            return Elapsed(seconds=total // ONE_SECOND, provisional=provisional)

        day += timedelta(days=1)
        while day < last_day:
            if day.weekday() == 0 and day + timedelta(days=7) <= last_day:
                week_seconds, week_provisional = self._week(day)
                total += week_seconds
                provisional = provisional or week_provisional
                day += timedelta(days=7)
                continue
            day_seconds, day_provisional = self._full_day(day)
            total += day_seconds
            provisional = provisional or day_provisional
            day += timedelta(days=1)
        last, last_provisional = self._overlap(last_day, start, end)
        total += last
        return Elapsed(seconds=total // ONE_SECOND, provisional=provisional or last_provisional)

    def knows_year(self, year: int) -> bool:
        """True when the statutory holidays of `year` are known, from the file or from chinesecalendar."""
        if year in self.years or not self.use_chinese_calendar:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def missing_years(self) -> set[int]:
        """Years this process has met in a computation without knowing their statutory holidays."""
        with self._warn_lock:
            return set(self._warned_years)

    def _spend_in_day(
        self, day: date, start: datetime | None, remaining: timedelta
    ) -> tuple[datetime | None, timedelta]:
        """Spend `remaining` in the open periods of `day` after `start`; return (deadline or None, what is left)."""
        if not self._day_info(day).working:
            return None, remaining
        for opens, closes in self._open_intervals(day):
            begin = opens if start is None else max(opens, start)
            if begin >= closes:
                continue
            if remaining <= closes - begin:
                return begin + remaining, timedelta(0)
            remaining -= closes - begin
        return None, remaining

    def _overlap(self, day: date, start: datetime, end: datetime) -> tuple[timedelta, bool]:
        info = self._day_info(day)
        total = timedelta(0)
        if info.working:
            for opens, closes in self._open_intervals(day):
                overlap = min(closes, end) - max(opens, start)
                if overlap > timedelta(0):
                    total += overlap
        return total, info.provisional

    def _full_day(self, day: date) -> tuple[timedelta, bool]:
        """Working time of a whole day and whether it is provisional, cached per day."""
        cached = self._day_totals.get(day)
        if cached is None:
            info = self._day_info(day)
            total = sum((closes - opens for opens, closes in self._open_intervals(day)), timedelta(0))
            cached = (total if info.working else timedelta(0), info.provisional)
            self._day_totals[day] = cached
        return cached

    def _week(self, monday: date) -> tuple[timedelta, bool]:
        """Working time of the seven days from `monday` and whether any is provisional, cached per week."""
        cached = self._week_totals.get(monday)
        if cached is None:
            days = [self._full_day(monday + timedelta(days=offset)) for offset in range(7)]
            cached = (sum((total for total, _ in days), timedelta(0)), any(flag for _, flag in days))
            self._week_totals[monday] = cached
        return cached

    def is_working_time(self, at: datetime) -> bool:
        at = _aware_utc(at, "at")
        day = at.astimezone(self.tz).date()
        if not self._day_info(day).working:
            return False
        return any(opens <= at < closes for opens, closes in self._open_intervals(day))

    def is_holiday(self, day: date) -> bool:
        """True on a statutory holiday, including weekend days inside a holiday break; False on plain weekends."""
        return self._day_info(day).holiday

    def is_working_day(self, day: date) -> bool:
        return self._day_info(day).working

    def _open_intervals(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """Return the day's periods as UTC instants, cached per day.

        Converting them on every call took about 40% of the time of `add`.
        """
        cached = self._intervals.get(day)
        if cached is None:
            midnight = datetime.combine(day, time(0), tzinfo=self.tz)
            cached = tuple(
                ((midnight + timedelta(seconds=opens)).astimezone(UTC),
                 (midnight + timedelta(seconds=closes)).astimezone(UTC))
                for opens, closes in self.periods
            )
            self._intervals[day] = cached
        return cached

    def _day_info(self, day: date) -> _DayInfo:
        info = self._days.get(day)
        if info is None:
            info = self._classify(day)
            self._days[day] = info
        return info

    def _classify(self, day: date) -> _DayInfo:
        holiday, makeup, provisional = self._statutory_status(day)
        working = (day.weekday() in self.weekdays and not holiday) or makeup
        if day in self.extra_workdays:
            working = True
        if day in self.closures:
            working = False
        return _DayInfo(working=working, holiday=holiday, provisional=provisional)

    def _statutory_status(self, day: date) -> tuple[bool, bool, bool]:
        """Return (statutory holiday, makeup workday, provisional) for `day`."""
        override = self.years.get(day.year)
        if override is not None:
            return day in override.holidays, day in override.makeup_workdays, False
        if not self.use_chinese_calendar:
            return False, False, False

        try:
            workday = chinese_calendar.is_workday(day)
            _, holiday_name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError:
            self._warn_missing_year(day.year)
            return (day.month, day.day) in FIXED_STATUTORY_DAYS, False, True
        holiday = not workday and holiday_name is not None
        makeup = workday and day.weekday() >= 5
        return holiday, makeup, False

    def _warn_missing_year(self, year: int) -> None:
        with self._warn_lock:
            if year in self._warned_years:
                return
            self._warned_years.add(year)
        log.warning(
            "Calendar %s: no holiday data for %s in chinesecalendar %s or calendars.yaml; counting weekends and "
            "fixed-date holidays only and marking deadlines provisional until the year is added under 'years'",
            self.name, year, getattr(chinese_calendar, "__version__", "?"),
        )


def add_with_pauses(
    calendar: BusinessCalendar, start: datetime, seconds: int, pauses: Sequence[tuple[datetime, datetime]]
) -> Deadline:
    """Return the deadline of a clock started at `start` that stood still during each pause.

    Pauses must start at or after `start`, end after they start and not overlap. A pause that starts
    at or after the deadline reached so far is ignored, because the clock had already run out.
    """
    start = _aware_utc(start, "start")
    ordered = sorted((_aware_utc(begin, "pause start"), _aware_utc(end, "pause end")) for begin, end in pauses)
    _check_pauses(start, ordered)

    deadline = calendar.add(start, seconds)
    paused = 0
    provisional = deadline.provisional
    for begin, end in ordered:
        if begin >= deadline.due_at:
            break
        pause = calendar.elapsed(begin, end)
        paused += pause.seconds
        provisional = provisional or pause.provisional
        deadline = calendar.add(start, seconds + paused)
        provisional = provisional or deadline.provisional
    return Deadline(due_at=deadline.due_at, provisional=provisional)


class InvalidPause(TemplatedError, ValueError):
    """A pause that starts before the clock, ends before it starts or overlaps the previous pause."""


def _check_pauses(start: datetime, ordered: Sequence[tuple[datetime, datetime]]) -> None:
    previous_end = start
    for begin, end in ordered:
        if begin < start:
            raise InvalidPause(N_("The pause starting %(begin)s is before the clock start %(start)s."),
                               begin=begin.isoformat(), start=start.isoformat())
        if end <= begin:
            raise InvalidPause(N_("The pause %(begin)s/%(end)s ends before it starts."), begin=begin.isoformat(),
                               end=end.isoformat())
        if begin < previous_end:
            raise InvalidPause(N_("The pause starting %(begin)s overlaps the previous pause."),
                               begin=begin.isoformat())
        previous_end = end


def parse_duration(text: str) -> int:
    """Return the seconds in a duration such as "15m", "4h", "8h30m", "90s" or "2d" (d = 24 hours).

    Units go from largest to smallest, each at most once. Raises ValueError for anything else or zero.
    """
    expected = "expected a positive duration such as 15m, 4h, 8h30m, 90s or 2d (d = 24 hours)"
    if not isinstance(text, str):
        raise ValueError(f"duration {text!r} is invalid: {expected}")
    stripped = text.strip()
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None:
        raise ValueError(f"duration {text!r} is invalid: {expected}")

    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total == 0:
        raise ValueError(f"duration {text!r} is zero: {expected}")
    return total


def load_calendars(path: Path, tz: ZoneInfo) -> dict[str, BusinessCalendar]:
    """Read calendars.yaml, raising RuleError with the file, the calendar and the problem in its message."""
    document = _read_yaml(path)
    where = path.name
    if not isinstance(document, dict) or not isinstance(document.get("calendars"), dict):
        raise RuleError(f"{where}: expected a mapping with a 'calendars' mapping at the top")
    if not document["calendars"]:
        raise RuleError(f"{where}: 'calendars' is empty: define at least one calendar")

    calendars = {}
    for name, spec in document["calendars"].items():
        calendars[str(name)] = _build_calendar(str(name), spec, tz, f"{where}, calendar {name!r}")
    return calendars


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RuleError(f"{path}: cannot be read: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as error:
        # PyYAML raises ValueError for an impossible date such as 2026-02-30.
        raise RuleError(f"{path.name}: invalid YAML: {error}") from None


def _build_calendar(name: str, spec: Any, tz: ZoneInfo, where: str) -> BusinessCalendar:
    if not isinstance(spec, dict):
        raise RuleError(f"{where}: expected a mapping of {', '.join(_CALENDAR_KEYS)}")
    unknown = sorted(set(spec) - set(_CALENDAR_KEYS))
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(_CALENDAR_KEYS)}")

    source = spec.get("statutory_holidays", "none")
    if source not in HOLIDAY_SOURCES:
        choices = ", ".join(HOLIDAY_SOURCES)
        raise RuleError(f"{where}: statutory_holidays {source!r} is invalid: expected one of {choices}")

    return BusinessCalendar(
        name=name,
        tz=tz,
        periods=_parse_periods(spec.get("hours"), where),
        weekdays=_parse_weekdays(spec.get("weekdays"), where),
        use_chinese_calendar=source == "chinese_calendar",
        years=_parse_years(spec.get("years") or {}, where),
        closures=_parse_dates(spec.get("closures") or [], f"{where}, closures"),
        extra_workdays=_parse_dates(spec.get("extra_workdays") or [], f"{where}, extra_workdays"),
        labels=(_parse_label(spec, "label", where), _parse_label(spec, "label_en", where)),
    )


def _parse_label(spec: dict, key: str, where: str) -> str | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise RuleError(f"{where}: {key} {value!r} is invalid: expected a non-empty text")
    return value


def _parse_periods(raw: Any, where: str) -> list[tuple[int, int]]:
    if not isinstance(raw, list) or not raw:
        raise RuleError(f"{where}: 'hours' is missing: expected a list such as [\"08:30-11:30\", \"13:00-17:00\"]")

    periods = []
    for entry in raw:
        match = _PERIOD.fullmatch(str(entry).strip())
        if match is None:
            raise RuleError(f"{where}: hours entry {entry!r} is invalid: expected HH:MM-HH:MM")
        opens = _seconds_of_day(match.group(1), match.group(2))
        closes = _seconds_of_day(match.group(3), match.group(4))
        if opens is None or closes is None or opens >= closes:
            raise RuleError(f"{where}: hours entry {entry!r} is invalid: expected a start before the end, up to 24:00")
        periods.append((opens, closes))

    periods.sort()
    for (_, earlier_end), (later_start, _) in zip(periods, periods[1:], strict=False):
        if later_start < earlier_end:
            raise RuleError(f"{where}: hours periods overlap: {raw!r}")
    return periods


def _seconds_of_day(hours: str, minutes: str) -> int | None:
    value = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or value > DAY_SECONDS:
        return None
    return value


def _parse_weekdays(raw: Any, where: str) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise RuleError(f"{where}: 'weekdays' is missing: expected a list of {', '.join(WEEKDAYS)}")
    days = []
    for entry in raw:
        if entry not in WEEKDAYS:
            raise RuleError(f"{where}: weekday {entry!r} is invalid: expected one of {', '.join(WEEKDAYS)}")
        days.append(WEEKDAYS.index(entry))
    return days


def _parse_years(raw: Any, where: str) -> dict[int, YearOverride]:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: 'years' is invalid: expected a mapping from year to holidays and makeup_workdays")

    years = {}
    for year, lists in raw.items():
        year_where = f"{where}, year {year}"
        if not str(year).isdigit() or len(str(year)) != 4:
            raise RuleError(f"{year_where}: the key is invalid: expected a four-digit year")
        if not isinstance(lists, dict) or set(lists) - set(_YEAR_KEYS):
            raise RuleError(f"{year_where}: expected a mapping with only {' and '.join(_YEAR_KEYS)}")

        holidays = _parse_dates(lists.get("holidays") or [], f"{year_where}, holidays")
        makeup = _parse_dates(lists.get("makeup_workdays") or [], f"{year_where}, makeup_workdays")
        stray = sorted(day for day in holidays | makeup if day.year != int(year))
        if stray:
            raise RuleError(f"{year_where}: date {stray[0].isoformat()} belongs to another year")
        years[int(year)] = YearOverride(holidays=holidays, makeup_workdays=makeup)
    return years


def _parse_dates(raw: Any, where: str) -> frozenset[date]:
    if not isinstance(raw, list):
        raise RuleError(f"{where}: expected a list of dates such as 2027-01-01")
    days = set()
    for entry in raw:
        if isinstance(entry, date) and not isinstance(entry, datetime):
            days.add(entry)
            continue
        try:
            days.add(date.fromisoformat(str(entry)))
        except ValueError:
            raise RuleError(f"{where}: date {entry!r} is invalid: expected YYYY-MM-DD") from None
    return frozenset(days)


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no time zone: expected an aware datetime")
    return value.astimezone(UTC)
