"""The two SLA watch lists: open tickets with a breached clock (overdue) and with a warned one (at risk).

A clock counts while it is running. The breach and warning sweep set breached_at and warned_at, so a
list shows what the sweep has flagged, not what a clock would show if judged this instant. The JSON
API and the supervisor dashboard read the lists through these queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import distinct
from sqlmodel import Session, func, select

from hotline.models import SlaClock, Ticket
from hotline.vocabulary import OPEN_STATUSES


@dataclass(frozen=True)
class WatchList:
    """A list's clock condition (checked on running clocks) and the order of its tickets."""

    name: str
    condition: Any
    order_by: Any


OVERDUE = WatchList("overdue", SlaClock.breached_at.is_not(None), func.min(SlaClock.breached_at))
AT_RISK = WatchList("at_risk", SlaClock.breached_at.is_(None) & SlaClock.warned_at.is_not(None),
                    func.min(SlaClock.due_at))


def _matching(query, watch: WatchList):
    return (query.join(SlaClock, SlaClock.ticket_id == Ticket.id)
            .where(SlaClock.state == "running").where(watch.condition)
            .where(Ticket.status.in_(OPEN_STATUSES)))


def tickets_query(watch: WatchList):
    """Select the tickets on `watch` in its order. Callers add offset and limit."""
    return _matching(select(Ticket), watch).group_by(Ticket.id).order_by(watch.order_by, Ticket.id)


def count(session: Session, watch: WatchList) -> int:
    """Count the tickets on `watch`."""
    return session.exec(_matching(select(func.count(distinct(Ticket.id))), watch)).one()


def clocks_of(session: Session, watch: WatchList, ticket_ids: list[int]) -> dict[int, list[SlaClock]]:
    """Return the clocks that put each of `ticket_ids` on `watch`, soonest due first."""
    if not ticket_ids:
        return {}
    rows = session.exec(
        select(SlaClock).where(SlaClock.ticket_id.in_(ticket_ids))
        .where(SlaClock.state == "running").where(watch.condition)
        .order_by(SlaClock.due_at, SlaClock.id)
    ).all()
    grouped: dict[int, list[SlaClock]] = {}
    for clock in rows:
        grouped.setdefault(clock.ticket_id, []).append(clock)
    return grouped
