"""Agency eligibility for a ticket, and the order of fair rotation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from hotline.agencies import DISPATCHABLE_STATUSES, expired_documents, on_duty
from hotline.models import Agency, Offer, Ticket
from hotline.vocabulary import OPEN_STATUSES

ALL_TOWNS = "*"


@dataclass(frozen=True)
class Candidate:
    agency: Agency
    active_jobs: int


def active_jobs_by_agency(session: Session) -> dict[int, int]:
    """Pending or accepted offers on open tickets, per agency: what counts against capacity."""
    rows = session.exec(
        select(Offer.agency_id, func.count(Offer.id))
        .join(Ticket, Ticket.id == Offer.ticket_id)
        .where(Offer.state.in_(("pending", "accepted")))
        .where(Ticket.status.in_(OPEN_STATUSES))
        .group_by(Offer.agency_id)
    ).all()
    return {agency_id: int(count) for agency_id, count in rows}


def eligible(session: Session, ticket: Ticket, kinds: Iterable[str], needed_services: set[str],
             local_now: datetime, exclude: set[int], ignore_capacity: bool = False,
             ignore_duty_hours: bool = False) -> list[Candidate]:
    """Agencies of `kinds` that may take `ticket` at `local_now`, longest-waiting first (fair rotation).

    Eligible: approved or on watch, filing and business licence both still valid on the local day (a
    document stops counting on its expiry date), on duty at `local_now` (wall-clock time in the hotline's
    time zone, unless `ignore_duty_hours`), serving the ticket's town, offering every needed service, below
    capacity (unless `ignore_capacity`), and not already offered this ticket.
    """
    today = local_now.date()
    agencies = session.exec(
        select(Agency).where(Agency.status.in_(DISPATCHABLE_STATUSES)).where(Agency.kind.in_(tuple(kinds)))
    ).all()
    active = active_jobs_by_agency(session)

    candidates = []
    for agency in agencies:
        jobs = active.get(agency.id, 0)
        if agency.id in exclude or (jobs >= agency.capacity and not ignore_capacity):
            continue
        if expired_documents(agency, today) or not (ignore_duty_hours or on_duty(agency, local_now)):
            continue
        if not serves_town(agency, ticket.town_code) or not needed_services <= set(agency.services or []):
            continue
        candidates.append(Candidate(agency, jobs))

    candidates.sort(key=_rotation_key)
    return candidates


def serves_town(agency: Agency, town_code: str | None) -> bool:
    towns = set(agency.towns or [])
    return ALL_TOWNS in towns or (town_code is not None and town_code in towns)


def _rotation_key(candidate: Candidate):
    last = candidate.agency.last_offered_at
    return (last is not None, last.timestamp() if last else 0.0, candidate.agency.id)
