"""The dispatch fairness report: how a period's offers were shared among agencies and how each responded.

The bureau must be able to show that vetted agencies got work fairly (公平竞争). Per agency the report
counts the offers sent in the period, split into automatic offers (made by the dispatch targets) and
offers an operator made by hand, each outcome with the decline reasons, the median time to accept, and
the agency's share of all automatic offers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from hotline.models import Offer
from hotline.reports.agencies import AgencyFigures, agency_figures
from hotline.reports.daily import median_minutes
from hotline.reports.period import Period

MANUAL_TARGET = "manual"
_SINCE_PATTERN = re.compile(r"^\s*([1-9][0-9]{0,2})\s*d\s*$")
MAX_DAYS = 366


@dataclass
class FairnessRow:
    """One agency's line of the report."""

    figures: AgencyFigures
    automatic: int = 0
    manual: int = 0
    decline_codes: dict[str, int] = field(default_factory=dict)
    share_percent: float | None = None

    @property
    def median_accept_minutes(self) -> float | None:
        return median_minutes(self.figures.accept_minutes)


def parse_since(text: str) -> int:
    """Read a period such as "30d" as a number of days (1 to 366); raise ValueError otherwise."""
    match = _SINCE_PATTERN.match(text or "")
    if match is None or int(match.group(1)) > MAX_DAYS:
        raise ValueError(f"invalid period {text!r}; write a number of days from 1 to {MAX_DAYS}, such as 30d")
    return int(match.group(1))


def fairness_report(session: Session, at: datetime, days: int, tz: ZoneInfo) -> tuple[Period, list[FairnessRow]]:
    """Build the report over the `days` local days up to and including the day of `at`."""
    period = Period.ending(at, days, tz)
    rows = {figures.agency_id: FairnessRow(figures) for figures in agency_figures(session, period)}

    for offer in session.exec(select(Offer).where(period.contains(Offer.sent_at))).all():
        row = rows.get(offer.agency_id)
        if row is None:
            continue
        if offer.target_id == MANUAL_TARGET:
            row.manual += 1
        else:
            row.automatic += 1
        if offer.state == "declined":
            code = offer.decline_code or "other"
            row.decline_codes[code] = row.decline_codes.get(code, 0) + 1

    total_automatic = sum(row.automatic for row in rows.values())
    for row in rows.values():
        row.share_percent = round(100 * row.automatic / total_automatic, 1) if total_automatic else None
    return period, list(rows.values())
