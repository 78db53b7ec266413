"""A reporting period: whole local days ending today, with the UTC instants that bound them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hotline.clock import as_aware_utc

PERIOD_DAYS = (7, 30)


@dataclass(frozen=True)
class Period:
    """The `days` local days up to and including the day of `at`, in zone `tz`.

    `start` is local midnight of the first day and `end` local midnight after the last one, both aware
    UTC, so an instant belongs to the period when start <= instant < end.
    """

    days: int
    first_day: date
    last_day: date
    start: datetime
    end: datetime
    tz: ZoneInfo

    @classmethod
    def ending(cls, at: datetime, days: int, tz: ZoneInfo) -> Period:
        last_day = as_aware_utc(at).astimezone(tz).date()
        first_day = last_day - timedelta(days=days - 1)
        return cls(days=days, first_day=first_day, last_day=last_day, start=_midnight(first_day, tz),
                   end=_midnight(last_day + timedelta(days=1), tz), tz=tz)

    def day_list(self) -> list[date]:
        return [self.first_day + timedelta(days=offset) for offset in range(self.days)]

    def index_of(self, instant: datetime) -> int | None:
        """Return the position of the local day of `instant` in day_list(), or None outside the period."""
        offset = (as_aware_utc(instant).astimezone(self.tz).date() - self.first_day).days
        return offset if 0 <= offset < self.days else None

    def contains(self, column):
        """Build the SQL condition start <= column < end."""
        return (column >= self.start) & (column < self.end)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)
