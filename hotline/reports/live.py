"""Open tickets right now: counts for the dashboard tiles, and the SLA watch lists with their owners."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import distinct
from sqlmodel import Session, func, select

from hotline.clock import as_aware_utc
from hotline.models import Offer, SlaClock, Ticket
from hotline.sla import watchlist
from hotline.vocabulary import OPEN_STATUSES

WATCH_ROWS = 50


@dataclass(frozen=True)
class LiveCounts:
    """Open tickets in total and by state, priority (1 to 4) and source."""

    open: int
    unassigned: int
    at_risk: int
    breached: int
    awaiting_acceptance: int
    accepted_by_agency: int
    waiting_on_agencies: int
    by_priority: dict[int, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WatchEntry:
    """One ticket on a watch list, with the clock that is due first and the agency that owns it, if any."""

    ticket: Ticket
    clock: SlaClock
    agency_id: int | None


def live_counts(session: Session) -> LiveCounts:
    """Count open tickets.

    A ticket waits on an agency while one of its offers is pending (awaiting acceptance) or once an
    agency has accepted it (status dispatched).
    """
    open_tickets = Ticket.status.in_(OPEN_STATUSES)
    pending_offer = Ticket.id.in_(select(Offer.ticket_id).where(Offer.state == "pending"))
    accepted = Ticket.status == "dispatched"

    def count(*conditions) -> int:
        return session.exec(select(func.count(distinct(Ticket.id))).where(open_tickets, *conditions)).one()

    by_priority = dict(session.exec(select(Ticket.priority, func.count(Ticket.id)).where(open_tickets)
                                    .group_by(Ticket.priority)).all())
    by_source = dict(session.exec(select(Ticket.source, func.count(Ticket.id)).where(open_tickets)
                                  .group_by(Ticket.source)).all())
    return LiveCounts(
        open=count(),
        unassigned=count(Ticket.assigned_to_id.is_(None)),
        at_risk=watchlist.count(session, watchlist.AT_RISK),
        breached=watchlist.count(session, watchlist.OVERDUE),
        awaiting_acceptance=count(pending_offer),
        accepted_by_agency=count(accepted),
        waiting_on_agencies=count(pending_offer | accepted),
        by_priority=by_priority,
        by_source=by_source,
    )


def watch_entries(session: Session, watch: watchlist.WatchList, at: datetime,
                  limit: int = WATCH_ROWS) -> list[WatchEntry]:
    """Return the first `limit` tickets on `watch` in its order, each with its soonest-due matching clock."""
    tickets = session.exec(watchlist.tickets_query(watch).limit(limit)).all()
    clocks = watchlist.clocks_of(session, watch, [ticket.id for ticket in tickets])
    offers = offers_by_ticket(session, [ticket.id for ticket in tickets])
    entries = []
    for ticket in tickets:
        clock = clocks[ticket.id][0]
        agency_id = responsible_agency(clock, ticket, offers.get(ticket.id, []), at)
        entries.append(WatchEntry(ticket=ticket, clock=clock, agency_id=agency_id))
    return entries


def offers_by_ticket(session: Session, ticket_ids: list[int]) -> dict[int, list[Offer]]:
    """Return the offers of each ticket in the order they were sent."""
    if not ticket_ids:
        return {}
    grouped: dict[int, list[Offer]] = {}
    for offer in session.exec(select(Offer).where(Offer.ticket_id.in_(ticket_ids))
                              .order_by(Offer.sent_at, Offer.attempt)).all():
        grouped.setdefault(offer.ticket_id, []).append(offer)
    return grouped


def responsible_agency(clock: SlaClock, ticket: Ticket, offers: list[Offer], reference: datetime) -> int | None:
    """Name the agency that owns an agency clock at `reference`, or None for a hotline clock.

    on_site belongs to the agency that accepted the ticket. dispatch_accept belongs to the agency of
    the last offer sent at or before `reference`, because that agency had the ticket in hand.
    """
    if clock.owner != "agency":
        return None
    if clock.target == "on_site" and ticket.agency_id is not None:
        return ticket.agency_id
    sent = [offer for offer in offers if as_aware_utc(offer.sent_at) <= as_aware_utc(reference)]
    return sent[-1].agency_id if sent else ticket.agency_id
