"""Example tables for dispatch.yaml: an agency roster, tickets, and the target and agency each must get.

A case file (`tests/dispatch/*.yaml` beside the rule files) has a shared `agencies` roster and `cases`.
Each case runs in its own in-memory SQLite database holding the towns, the roster (approved, documents
valid, unless the roster or the case sets otherwise) and the case's ticket, so the real eligibility
queries and the real target walk decide it. A case may set:

    ticket:   town (name or code), needs, chosen (an agency name), category (default agency_service)
    busy:     {agency name: jobs it already holds}
    tried:    [agency names that already declined or let this ticket time out]
    waited:   [agency names in order from the longest since their last offer to the most recent]
    status:   {agency name: vetting status}
    expired:  [agency names whose filing expired yesterday]
    expect:   {target: ID, agency: NAME} | {hold: TARGET ID} | {escalate: true}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from hotline.dispatch import targets
from hotline.dispatch.config import DispatchConfig
from hotline.models import Agency, Offer, Ticket, Town
from hotline.rules.expressions import RuleError
from hotline.rules.facts import ticket_facts
from hotline.seed import TOWNS

CASES_DIR = Path("tests") / "dispatch"
CASE_KEYS = {"name", "note", "ticket", "busy", "tried", "waited", "status", "expired", "expect"}
# The instant every case is judged at; only the local date matters for document expiry.
JUDGED_AT = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


@dataclass(frozen=True)
class DispatchCase:
    name: str
    location: str
    spec: dict[str, Any]
    roster: list[dict[str, Any]] = field(default_factory=list)


def load_dispatch_cases(path: Path) -> list[DispatchCase]:
    """Read a case file; raise RuleError naming the file and case for an unknown key or a missing expectation."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise RuleError(f"{path}: cannot be read: {error}") from None
    roster = data.get("agencies") or []
    cases = []
    for index, spec in enumerate(data.get("cases") or [], start=1):
        where = f"{path}, case {index}"
        if not isinstance(spec, dict) or "name" not in spec or "expect" not in spec:
            raise RuleError(f"{where}: every case needs a name and an expect")
        unknown = sorted(set(spec) - CASE_KEYS)
        if unknown:
            raise RuleError(f"{where}: unknown keys {unknown}; accepted: {sorted(CASE_KEYS)}")
        cases.append(DispatchCase(name=str(spec["name"]), location=where, spec=spec, roster=roster))
    return cases


def run_dispatch_case(config: DispatchConfig, case: DispatchCase) -> list[str]:
    """Run one case; return what differs from its expectation (empty when it passes)."""
    engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
    SQLModel.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            ticket, tried = _build_world(session, case)
            town = session.get(Town, ticket.town_code) if ticket.town_code else None
            facts = ticket_facts(ticket, town=town)
            choice = targets.choose(session, config, ticket, facts, JUDGED_AT, tried)
            return _compare(case.spec["expect"], choice)
    finally:
        engine.dispose()


def _build_world(session: Session, case: DispatchCase) -> tuple[Ticket, set[int]]:
    spec = case.spec
    session.add_all(Town(code=code, name=name, pilot=pilot) for code, name, pilot in TOWNS)
    towns = {name: code for code, name, _ in TOWNS}
    agencies = {}
    for entry in case.roster:
        agency = _agency(entry, towns, spec)
        session.add(agency)
        agencies[agency.name] = agency
    session.flush()

    _order_rotation(agencies, spec.get("waited") or [])
    ticket = _ticket(spec.get("ticket") or {}, towns, agencies)
    session.add(ticket)
    session.flush()
    for name, jobs in (spec.get("busy") or {}).items():
        _hold_jobs(session, _named(agencies, name, case), jobs)
    tried = {_named(agencies, name, case).id for name in spec.get("tried") or []}
    return ticket, tried


def _agency(entry: dict[str, Any], towns: dict[str, str], spec: dict[str, Any]) -> Agency:
    name = entry["name"]
    expired = name in (spec.get("expired") or [])
    return Agency(
        name=name, kind=entry.get("kind", "agency"), status=(spec.get("status") or {}).get(name, "approved"),
        towns=["*" if town == "*" else towns.get(town, town) for town in entry.get("towns") or []],
        services=list(entry.get("services") or []), capacity=int(entry.get("capacity", 1)),
        contact_phone=entry.get("contact_phone", "+8613900000000"),
        filing_expires_on=JUDGED_AT.date() - timedelta(days=1) if expired else date(2030, 12, 31),
    )


def _order_rotation(agencies: dict[str, Agency], waited: list[str]) -> None:
    for position, name in enumerate(waited):
        agencies[name].last_offered_at = JUDGED_AT - timedelta(hours=len(waited) - position)


def _ticket(spec: dict[str, Any], towns: dict[str, str], agencies: dict[str, Agency]) -> Ticket:
    town = spec.get("town")
    chosen = spec.get("chosen")
    return Ticket(number="QP-CASE-0001", channel="referral_api", source="community_worker",
                  category=spec.get("category", "agency_service"), needs=list(spec.get("needs") or []),
                  town_code=towns.get(town, town) if town else None, status="new", created_at=JUDGED_AT,
                  updated_at=JUDGED_AT, chosen_agency_id=agencies[chosen].id if chosen else None)


def _hold_jobs(session: Session, agency: Agency, jobs: int) -> None:
    """Give `agency` that many pending offers on other open tickets, which count against its capacity."""
    for index in range(jobs):
        other = Ticket(number=f"QP-BUSY-{agency.id}-{index}", channel="phone", source="resident",
                       category="agency_service", status="dispatching", created_at=JUDGED_AT, updated_at=JUDGED_AT)
        session.add(other)
        session.flush()
        session.add(Offer(ticket_id=other.id, agency_id=agency.id, attempt=1, code=f"B{agency.id:02d}{index:03d}",
                          reason="busy", sent_at=JUDGED_AT, accept_by=JUDGED_AT + timedelta(minutes=15)))
    session.flush()


def _named(agencies: dict[str, Agency], name: str, case: DispatchCase) -> Agency:
    if name not in agencies:
        raise RuleError(f"{case.location}: agency {name!r} is not in the roster")
    return agencies[name]


def _compare(expect: dict[str, Any], choice: targets.Choice) -> list[str]:
    actual = _outcome(choice)
    expected = {key: expect[key] for key in ("target", "agency", "hold", "escalate") if key in expect}
    return [] if actual == expected else [f"expected {expected}, got {actual}"]


def _outcome(choice: targets.Choice) -> dict[str, Any]:
    if choice.candidate is not None:
        return {"target": choice.target.id, "agency": choice.candidate.agency.name}
    if choice.target is not None:
        return {"hold": choice.target.id}
    return {"escalate": True}

