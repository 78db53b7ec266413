"""The one source of "now": aware UTC, so tests can pin it with time-machine."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    """Return the current instant as an aware UTC datetime."""
    return datetime.now(UTC)


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; naive values are rejected rather than guessed."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def local(value: datetime, tz: ZoneInfo = SHANGHAI) -> datetime:
    """Show an instant in the hotline's time zone."""
    return as_aware_utc(value).astimezone(tz)


def as_aware_utc(value: datetime) -> datetime:
    """Return `value` as aware UTC, treating a naive value as UTC (how SQLite hands some back)."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None, tz: ZoneInfo = SHANGHAI) -> str | None:
    """Format an instant for the API: ISO 8601 in the hotline's zone, with its offset."""
    if value is None:
        return None
    return _isoformat(as_aware_utc(value), tz)


@lru_cache(maxsize=1024)
def _isoformat(value: datetime, tz: ZoneInfo) -> str:
    # A new ticket's view formats the same few instants about ten times (created, updated, each event and
    # clock). The key is the UTC instant: two local times that differ only in `fold` compare equal.
    return value.astimezone(tz).isoformat()
