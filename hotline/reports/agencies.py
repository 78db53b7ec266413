"""Agency quality over a period: offers and their outcomes, acceptance times and SLA breaches per agency."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import Session, select

from hotline.clock import as_aware_utc
from hotline.models import Agency, Offer, SlaClock, Ticket
from hotline.reports.live import offers_by_ticket, responsible_agency
from hotline.reports.period import Period

# Outcomes that count towards the acceptance rate. Pending offers have no outcome yet, and withdrawn
# (cancelled) ones were taken back by the hotline, so neither reflects on the agency.
ANSWERED_STATES = ("accepted", "declined", "timed_out")


@dataclass
class AgencyFigures:
    """One agency's offers sent in the period by state, its acceptance times and its SLA breaches."""

    agency_id: int
    name: str
    kind: str
    status: str
    offers: int = 0
    states: dict[str, int] = field(default_factory=dict)
    accept_minutes: list[float] = field(default_factory=list)
    breaches: int = 0

    @property
    def accepted(self) -> int:
        return self.states.get("accepted", 0)

    @property
    def acceptance_rate(self) -> float | None:
        """Percentage accepted among offers accepted, declined or timed out, to one decimal, or None without any."""
        answered = sum(self.states.get(state, 0) for state in ANSWERED_STATES)
        return round(100 * self.accepted / answered, 1) if answered else None


def agency_figures(session: Session, period: Period) -> list[AgencyFigures]:
    """Return every agency's figures for offers sent and agency clocks breached in the period.

    A breach is charged to the agency that owned the clock when it ran out (see responsible_agency).
    """
    agencies = session.exec(select(Agency).order_by(Agency.kind, Agency.id)).all()
    figures = {agency.id: AgencyFigures(agency_id=agency.id, name=agency.name, kind=agency.kind,
                                        status=agency.status) for agency in agencies}
    _count_offers(session, period, figures)
    _count_breaches(session, period, figures)
    return list(figures.values())


def _count_offers(session: Session, period: Period, figures: dict[int, AgencyFigures]) -> None:
    for offer in session.exec(select(Offer).where(period.contains(Offer.sent_at))).all():
        entry = figures.get(offer.agency_id)
        if entry is None:
            continue
        entry.offers += 1
        entry.states[offer.state] = entry.states.get(offer.state, 0) + 1
        if offer.state == "accepted" and offer.responded_at is not None:
            waited = as_aware_utc(offer.responded_at) - as_aware_utc(offer.sent_at)
            entry.accept_minutes.append(waited.total_seconds() / 60)


def _count_breaches(session: Session, period: Period, figures: dict[int, AgencyFigures]) -> None:
    rows = session.exec(
        select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id)
        .where(SlaClock.owner == "agency").where(period.contains(SlaClock.breached_at))
    ).all()
    offers = offers_by_ticket(session, list({ticket.id for _, ticket in rows}))
    for clock, ticket in rows:
        agency_id = responsible_agency(clock, ticket, offers.get(ticket.id, []), clock.breached_at)
        if agency_id in figures:
            figures[agency_id].breaches += 1
