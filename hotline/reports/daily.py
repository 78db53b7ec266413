"""Daily series over a period: tickets by source, SLA on-time rates, first-response times, tickets by town.

SQL picks the rows of the period (portable comparisons on aware UTC columns) and Python sorts them into
local days, because SQLite and PostgreSQL have no common way to take the local date of an instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from sqlmodel import Session, func, select

from hotline.clock import as_aware_utc
from hotline.models import SlaClock, Ticket, Town
from hotline.reports.period import Period
from hotline.vocabulary import SOURCES


@dataclass
class OnTime:
    """Clocks decided on time and in total. A clock is decided once it is breached or met."""

    on_time: int = 0
    total: int = 0

    @property
    def rate(self) -> float | None:
        """Percentage on time, to one decimal, or None when nothing was decided."""
        return round(100 * self.on_time / self.total, 1) if self.total else None

    def add(self, late: bool) -> None:
        self.total += 1
        self.on_time += 0 if late else 1


@dataclass
class OnTimeSeries:
    """On-time counts per day for all targets together and for each target, and over the whole period."""

    all_days: list[OnTime]
    by_target: dict[str, list[OnTime]] = field(default_factory=dict)
    target_totals: dict[str, OnTime] = field(default_factory=dict)
    total: OnTime = field(default_factory=OnTime)


def tickets_by_source(session: Session, period: Period) -> dict[str, list[int]]:
    """Count tickets created on each day, per source. Every known source is present, unused ones with zeros."""
    counts = {source: [0] * period.days for source in SOURCES}
    rows = session.exec(select(Ticket.created_at, Ticket.source).where(period.contains(Ticket.created_at))).all()
    for created_at, source in rows:
        index = period.index_of(created_at)
        if index is not None:
            counts.setdefault(source, [0] * period.days)[index] += 1
    return counts


def on_time(session: Session, period: Period) -> OnTimeSeries:
    """Count SLA clocks decided in the period, each on the local day it was decided.

    A breached clock is decided late on the day of breached_at, whether or not it was met afterwards. A
    clock met without a breach is decided on time on the day of met_at. Running, paused and cancelled
    clocks without a breach are not decided yet and are left out.
    """
    decided = period.contains(SlaClock.breached_at) | (
        SlaClock.breached_at.is_(None) & (SlaClock.state == "met") & period.contains(SlaClock.met_at))
    rows = session.exec(select(SlaClock.target, SlaClock.breached_at, SlaClock.met_at).where(decided)).all()

    series = OnTimeSeries(all_days=[OnTime() for _ in range(period.days)])
    for target, breached_at, met_at in rows:
        index = period.index_of(breached_at or met_at)
        if index is None:
            continue
        late = breached_at is not None
        series.all_days[index].add(late)
        series.by_target.setdefault(target, [OnTime() for _ in range(period.days)])[index].add(late)
        series.target_totals.setdefault(target, OnTime()).add(late)
        series.total.add(late)
    return series


def first_response_minutes(session: Session, period: Period) -> list[list[float]]:
    """List, per day a ticket came in, the minutes from intake to its met first_response clock.

    The minutes are elapsed wall-clock time, pauses included, because that is how long the caller
    waited. Tickets not yet answered are left out, so the last days fill in as they are answered.
    """
    rows = session.exec(
        select(SlaClock.started_at, SlaClock.met_at)
        .where(SlaClock.target == "first_response").where(SlaClock.met_at.is_not(None))
        .where(period.contains(SlaClock.started_at))
    ).all()
    minutes: list[list[float]] = [[] for _ in range(period.days)]
    for started_at, met_at in rows:
        index = period.index_of(started_at)
        if index is not None:
            minutes[index].append((as_aware_utc(met_at) - as_aware_utc(started_at)).total_seconds() / 60)
    return minutes


def median_minutes(values: list[float]) -> float | None:
    """Return the median to one decimal, or None for no values."""
    return round(median(values), 1) if values else None


def tickets_by_town(session: Session, period: Period) -> list[tuple[str | None, int]]:
    """Count tickets created in the period per town code, every town included, None for no town.

    The list runs from the most tickets to the fewest, then by town code. None comes last.
    """
    counts = {code: 0 for code in session.exec(select(Town.code)).all()}
    rows = session.exec(select(Ticket.town_code, func.count(Ticket.id))
                        .where(period.contains(Ticket.created_at)).group_by(Ticket.town_code)).all()
    without_town = 0
    for code, count in rows:
        if code is None:
            without_town = count
        else:
            counts[code] = count
    ordered: list[tuple[str | None, int]] = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if without_town:
        ordered.append((None, without_town))
    return ordered
