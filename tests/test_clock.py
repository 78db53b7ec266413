"""Instants shown in the hotline's zone: the API's ISO 8601 text and the local datetime."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hotline.clock import SHANGHAI, isoformat, local

NEW_YORK = ZoneInfo("America/New_York")


def test_isoformat_distinguishes_repeated_hour():
    # 01:30 happens twice in New York on 2023-11-05. The two values compare equal but are an hour apart.
    first = datetime(2023, 11, 5, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)

    assert isoformat(first) == "2023-11-05T13:30:00+08:00"
    assert isoformat(second) == "2023-11-05T14:30:00+08:00"


def test_isoformat_reads_naive_value_as_utc():
    assert isoformat(datetime(2026, 12, 7, 1, 0)) == "2026-12-07T09:00:00+08:00"
    assert isoformat(datetime(2026, 12, 7, 1, 0, tzinfo=UTC)) == "2026-12-07T09:00:00+08:00"
    assert isoformat(None) is None


def test_local_normalises_nonexistent_wall_time():
    # Shanghai skipped 02:00-03:00 on 1986-05-04, when it kept daylight saving time.
    skipped = datetime(1986, 5, 4, 2, 30, tzinfo=SHANGHAI)

    assert local(skipped).isoformat() == "1986-05-04T03:30:00+09:00"
