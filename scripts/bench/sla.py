"""SLA benchmark: deadline computations per second, and the sweep over 10,000 and 1,000,000 open clocks.

The sweep runs on a throwaway PostgreSQL database (created and dropped here) filled with COPY. In both
sizes 1% of the open clocks are past due; the sweep flags them in one call, so the two timings differ
by the work that is due, and the ratio shows what the number of open clocks adds on top.

Usage: .venv/bin/python scripts/bench/sla.py [--admin-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import hotline.models  # noqa: F401  (registers the tables)
from hotline.config import load_settings
from hotline.runtime import build_runtime
from hotline.sla import sweep

log = logging.getLogger("hotline.bench")
NOW = datetime(2026, 3, 16, 2, 0, tzinfo=UTC)
TARGETS = ("first_response", "dispatch_accept", "on_site", "resolution", "follow_up")


class DiscardQueue:
    """Counts enqueued jobs without running them, so delivery does not enter the sweep's timing."""

    def __init__(self):
        self.count = 0

    def enqueue(self, name: str, *args) -> None:
        self.count += 1


def deadline_rate(calendar, seconds: int, runs: int) -> float:
    rng = random.Random(7)
    base = datetime(2026, 1, 5, tzinfo=UTC)
    starts = [base + timedelta(minutes=rng.randrange(0, 300 * 24 * 60)) for _ in range(runs)]
    began = time.perf_counter()
    for start in starts:
        calendar.add(start, seconds)
    return runs / (time.perf_counter() - began)


def fill(url: str, open_clocks: int) -> None:
    """Insert tickets and `open_clocks` running clocks with COPY; 1% are due before NOW."""
    import psycopg

    tickets = (open_clocks + len(TARGETS) - 1) // len(TARGETS)
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        ticket_copy = ("COPY ticket (id, number, channel, source, category, needs, flags, tags, priority, queue_rank, "
                       "priority_reasons, rule_trace, status, created_at, updated_at) FROM STDIN")
        with cursor.copy(ticket_copy) as copy:
            for ticket_id in range(1, tickets + 1):
                copy.write_row((ticket_id, f"QP-B-{ticket_id:09d}", "phone", "resident", "consultation", "[]", "[]",
                                "[]", 3, 100, "[]", "[]", "in_progress", NOW, NOW))
        with cursor.copy("COPY slaclock (ticket_id, target, policy, calendar, duration_seconds, started_at, due_at, "
                         "state, paused_seconds, provisional, owner, next_check_at) FROM STDIN") as copy:
            for index in range(open_clocks):
                late = index % 100 == 0
                due = NOW - timedelta(minutes=1 + index % 60) if late else NOW + timedelta(days=1 + index % 30)
                copy.write_row((index // len(TARGETS) + 1, TARGETS[index % len(TARGETS)], "bench", "24x7", 3600,
                                due - timedelta(hours=1), due, "running", 0, False, "hotline", due))
        cursor.execute("SELECT setval('ticket_id_seq', %s)", (tickets,))
        connection.commit()
        cursor.execute("ANALYZE")


def timed_sweep(admin_url: str, open_clocks: int) -> tuple[float, int, float]:
    """Return (sweep seconds, clocks flagged, seconds for the due query alone) on a fresh database."""
    name = f"hotline_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        engine = create_engine(url)
        SQLModel.metadata.create_all(engine)
        engine.dispose()
        fill(url, open_clocks)
        runtime = build_runtime(replace(load_settings(), database_url=url, redis_url=None), queue=DiscardQueue())
        # Run the due query once untimed, so its timing below leaves out connecting, compiling the
        # statement and loading type information, which the sweep's own due query also skips.
        sweep._due_ids(runtime, NOW, 10_000)
        began = time.perf_counter()
        sweep._due_ids(runtime, NOW, 10_000)
        query_seconds = time.perf_counter() - began
        began = time.perf_counter()
        result = sweep.sweep(runtime, now=NOW, limit=open_clocks)
        seconds = time.perf_counter() - began
        runtime.engine.dispose()
        return seconds, result.breached, query_seconds
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    settings = load_settings()
    from hotline.sla.calendars import load_calendars

    workday = load_calendars(settings.rules_dir / "calendars.yaml", settings.timezone)["workday"]
    hour_rate = deadline_rate(workday, 3600, args.runs)
    month_rate = deadline_rate(workday, 30 * (8 * 3600 + 1800), args.runs)
    say(f"deadlines per second, workday calendar: 1 hour {hour_rate:,.0f}; 30 working days {month_rate:,.0f}; "
          f"ratio {month_rate / hour_rate:.2f}")

    small_seconds, small_flagged, small_query = timed_sweep(args.admin_url, args.small)
    large_seconds, large_flagged, large_query = timed_sweep(args.admin_url, args.large)
    say(f"sweep {args.small:>9,} open clocks: {small_flagged:>6,} flagged in {small_seconds:.3f} s "
          f"({small_seconds / max(small_flagged, 1) * 1000:.3f} ms each); due query {small_query * 1000:.1f} ms")
    say(f"sweep {args.large:>9,} open clocks: {large_flagged:>6,} flagged in {large_seconds:.3f} s "
          f"({large_seconds / max(large_flagged, 1) * 1000:.3f} ms each); due query {large_query * 1000:.1f} ms")
    per_clock_ratio = (large_seconds / max(large_flagged, 1)) / (small_seconds / max(small_flagged, 1))
    say(f"ratio per flagged clock, large / small: {per_clock_ratio:.2f}; "
          f"due-query ratio {large_query / small_query:.2f}; whole-sweep ratio {large_seconds / small_seconds:.1f}")
    say(("PASS" if per_clock_ratio <= 2 else "FAIL") + "  per-clock sweep cost at 1M within 2x of 10k")
    say(("PASS" if large_seconds < 2 else "FAIL") + f"  1M sweep under 2 s ({large_seconds:.2f} s)")


if __name__ == "__main__":
    main()
