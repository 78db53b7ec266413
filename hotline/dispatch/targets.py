"""Walk the dispatch targets of `dispatch.yaml` in order and pick the agency for a ticket's next offer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from hotline.dispatch import registry
from hotline.dispatch.config import DispatchConfig, DispatchTarget
from hotline.models import Agency, Ticket


@dataclass(frozen=True)
class Choice:
    """The outcome of walking the targets.

    `candidate` is the agency to offer the ticket to under `target`. With no candidate, `target` is
    the target that holds the ticket until one of its agencies is free, or None when every target was
    skipped and the supervisor must be told.
    """

    target: DispatchTarget | None
    candidate: registry.Candidate | None
    skipped: tuple[str, ...]


def choose(session: Session, config: DispatchConfig, ticket: Ticket, ticket_facts: Mapping[str, Any],
           local_now: datetime, exclude: set[int]) -> Choice:
    """Return the first target with a free eligible agency, the first target that holds, or neither.

    `skipped` words every target passed over and why, in Chinese, for the offer's reason text.
    """
    needed = set(ticket.needs or []) & config.on_site_needs
    skipped = []
    for target in config.targets:
        if not target.applies_to(ticket_facts):
            skipped.append(f"{target.description}——不适用于本工单")
            continue

        matching = _matching(session, ticket, target, needed, local_now, exclude)
        free = [candidate for candidate in matching if candidate.active_jobs < candidate.agency.capacity]
        if free:
            return Choice(target, free[0], tuple(skipped))
        if matching and "all_at_capacity" not in target.skip_if:
            return Choice(target, None, tuple(skipped))
        passed_over = _why_passed_over(session, ticket, target, needed, local_now, exclude, matching)
        skipped.append(f"{target.description}——{passed_over}")
    return Choice(None, None, tuple(skipped))


def _matching(session: Session, ticket: Ticket, target: DispatchTarget, needed: set[str], local_now: datetime,
              exclude: set[int], ignore_duty_hours: bool = False) -> list[registry.Candidate]:
    """Return the target's eligible agencies for `ticket`, at capacity or not, in rotation order."""
    candidates = registry.eligible(session, ticket, target.kinds, needed, local_now, exclude=exclude,
                                   ignore_capacity=True, ignore_duty_hours=ignore_duty_hours)
    return [candidate for candidate in candidates if target.selects(agency_facts(candidate.agency, ticket))]


def _why_passed_over(session: Session, ticket: Ticket, target: DispatchTarget, needed: set[str],
                     local_now: datetime, exclude: set[int], matching: list[registry.Candidate]) -> str:
    """Word, in Chinese for the reason of a later offer, why a target had no free agency."""
    if matching:
        return "均已满额"
    if _matching(session, ticket, target, needed, local_now, exclude, ignore_duty_hours=True):
        return "符合条件的机构均不在值班时间"
    return "无符合条件的机构"


def agency_facts(agency: Agency, ticket: Ticket) -> dict[str, Any]:
    """Build the facts a target's `select` condition reads about `agency` for `ticket`."""
    return {
        "kind": agency.kind,
        "name": agency.name,
        "status": agency.status,
        "services": [str(service) for service in agency.services or []],
        "chosen": agency.id == ticket.chosen_agency_id,
        "serves_all_towns": registry.ALL_TOWNS in (agency.towns or []),
    }


@dataclass(frozen=True)
class AgencyStanding:
    """Whether one agency could take a ticket now, and each reason it could not (see STANDING_PROBLEMS)."""

    agency: Agency
    active_jobs: int
    problems: tuple[str, ...]

    @property
    def eligible(self) -> bool:
        return not self.problems


# Reasons an agency cannot take a ticket, in the order the ticket page lists them.
STANDING_PROBLEMS = ("not_approved", "documents_expired", "off_duty", "other_town", "missing_services",
                     "at_capacity", "tried")


def agency_standings(session: Session, config: DispatchConfig, ticket: Ticket, local_now: datetime,
                     tried: set[int]) -> list[AgencyStanding]:
    """Judge every agency for `ticket` at `local_now`: eligible ones first in rotation order, then the rest by name."""
    from hotline.agencies import DISPATCHABLE_STATUSES, expired_documents, on_duty

    today = local_now.date()
    needed = set(ticket.needs or []) & config.on_site_needs
    active = registry.active_jobs_by_agency(session)
    rotation = {candidate.agency.id: position for position, candidate in enumerate(
        registry.eligible(session, ticket, ("agency", "funeral_home"), needed, local_now, exclude=set(),
                          ignore_capacity=True))}

    standings = []
    for agency in session.exec(select(Agency)).all():
        jobs = active.get(agency.id, 0)
        checks = {
            "not_approved": agency.status not in DISPATCHABLE_STATUSES,
            "documents_expired": bool(expired_documents(agency, today)),
            "off_duty": not on_duty(agency, local_now),
            "other_town": not registry.serves_town(agency, ticket.town_code),
            "missing_services": not needed <= set(agency.services or []),
            "at_capacity": jobs >= agency.capacity,
            "tried": agency.id in tried,
        }
        problems = tuple(problem for problem in STANDING_PROBLEMS if checks[problem])
        standings.append(AgencyStanding(agency, jobs, problems))
    standings.sort(key=lambda standing: (not standing.eligible, rotation.get(standing.agency.id, len(rotation)),
                                         standing.agency.name))
    return standings
