"""Replay stored tickets against a candidate rule set and report what would change. Nothing is written.

Each ticket is evaluated with the facts it had when the rules last evaluated it: at intake, or at the
caller's menu choice if that came later. What the database keeps allows rebuilding them as follows:

1. category, channel, source (so whether it is a referral), needs, flags and town: the stored fields,
   which change only at the menu choice, and that choice evaluates the rules again;
2. tags: the stored tags less those the last evaluation added and a `callback_needed` tag added
   after it;
3. priority: the ticket's priority before that evaluation (P3, the column default, at intake);
4. open_tickets_of_caller: the caller's other tickets created by then whose status at that instant,
   read from their status events, was open;
5. calls_last_30_days: the caller's calls started in the 30 days before that instant;
6. working_time and holiday: the candidate's `workday` calendar at that instant.

The outcome is compared with what the ticket stores. To tell a rule change from a fact that could not
be rebuilt, every ticket whose own rule set version is still available is also evaluated with that
version, and the report counts the tickets it does not reproduce.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import rule_engine
from sqlmodel import Session, select

from hotline.clock import as_aware_utc
from hotline.models import Call, SlaClock, Ticket, TicketEvent, Town
from hotline.rules import versions
from hotline.rules.engine import PriorityDecision, RuleSet
from hotline.rules.expressions import RuleError
from hotline.rules.facts import ticket_facts
from hotline.vocabulary import OPEN_STATUSES

log = logging.getLogger("hotline.rules")

PERIOD = re.compile(r"^\s*(\d+)\s*([dh])\s*$")
HISTORY_DAYS = 30
INTAKE_PRIORITY = 3  # Ticket.priority's column default, which the rules read at intake
INTAKE_TARGETS = ("resolution", "first_response")
PRIORITY_EFFECTS = ("priority", "raise", "raised_to")
DEFAULTS = "defaults"
_CHUNK = 500


@dataclass(frozen=True)
class Difference:
    """A value that would change, with the ids of the rules whose effects differ ("defaults" for the defaults)."""

    before: Any
    after: Any
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class TicketChange:
    """The changes the candidate rules would make to one ticket; None for a value that stays."""

    number: str
    created_at: datetime
    evaluated_at: datetime
    stored_version: str | None
    priority: Difference | None
    queue_rank: Difference | None
    sla_policy: Difference | None


@dataclass
class SimulationReport:
    """The outcome of one replay. `reproduced` counts tickets whose own version gives their stored outcome."""

    candidate_version: str
    since: datetime
    until: datetime
    tickets: int = 0
    skipped: int = 0
    changes: list[TicketChange] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    replayed_with_own_version: int = 0
    reproduced: int = 0
    not_reproduced: list[str] = field(default_factory=list)

    def count(self, attribute: str) -> int:
        return sum(1 for change in self.changes if getattr(change, attribute) is not None)

    @property
    def raised(self) -> int:
        return sum(1 for change in self.changes if change.priority and change.priority.after < change.priority.before)

    @property
    def lowered(self) -> int:
        return sum(1 for change in self.changes if change.priority and change.priority.after > change.priority.before)

    @property
    def unchanged(self) -> int:
        return self.tickets - len(self.changes) - len(self.errors)


@dataclass(frozen=True)
class _Context:
    """The rows a chunk of tickets needs from the database besides the tickets themselves."""

    towns: Mapping[str, Town]
    events: Mapping[int, list[TicketEvent]]
    policies: Mapping[int, str]
    calls: Mapping[str, list[datetime]]
    caller_tickets: Mapping[str, list[tuple[int, datetime]]]
    statuses: Mapping[int, list[tuple[datetime, str]]]


def parse_period(text: str) -> timedelta:
    """Parse a period such as "30d" or "12h" (whole days or hours, at least 1); raise ValueError otherwise."""
    match = PERIOD.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid period {text!r}: expected a whole number of days or hours, such as 30d or 12h")
    amount, unit = int(match.group(1)), match.group(2)
    return timedelta(days=amount) if unit == "d" else timedelta(hours=amount)


def simulate(session: Session, rule_set: RuleSet, policies, calendars: Mapping[str, Any], since: datetime,
             until: datetime) -> SimulationReport:
    """Replay the tickets created from `since` to `until` with `rule_set`, its SLA policies and calendars."""
    report = SimulationReport(candidate_version=rule_set.version, since=since, until=until)
    ids = session.exec(select(Ticket.id).where(Ticket.created_at >= since, Ticket.created_at <= until)
                       .order_by(Ticket.created_at, Ticket.id)).all()
    for chunk in _chunks(ids, _CHUNK):
        tickets = session.exec(select(Ticket).where(Ticket.id.in_(chunk))
                               .order_by(Ticket.created_at, Ticket.id)).all()
        context = _load_context(session, tickets)
        for ticket in tickets:
            _replay(session, ticket, context, rule_set, policies, calendars, report)
    log.info("Rules: simulated version %s on %d tickets: %d changed, %d failed", rule_set.version, report.tickets,
             len(report.changes), len(report.errors))
    return report


def _replay(session: Session, ticket: Ticket, context: _Context, rule_set: RuleSet, policies, calendars,
            report: SimulationReport) -> None:
    if ticket.rule_set_version is None:
        report.skipped += 1
        return
    report.tickets += 1

    evaluated_at = _evaluation_instant(ticket, context.events.get(ticket.id, []))
    facts = _facts_then(ticket, evaluated_at, context, calendars)
    try:
        decision = rule_set.evaluate_priority(facts)
        policy = policies.choose({**facts, "priority": float(decision.priority), "category": ticket.category}).id
    except (RuleError, ValueError, LookupError, rule_engine.errors.EngineError) as error:
        report.errors.append((ticket.number, str(error)))
        return

    own = versions.rule_set_of_version(session, ticket.rule_set_version)
    _check_reproduction(ticket, own, facts, report)
    change = _compare(ticket, evaluated_at, decision, context.policies.get(ticket.id), policy,
                      _changed_defaults(own, rule_set))
    if change is not None:
        report.changes.append(change)


def _facts_then(ticket: Ticket, evaluated_at: datetime, context: _Context, calendars) -> dict[str, Any]:
    events = context.events.get(ticket.id, [])
    town = context.towns.get(ticket.town_code) if ticket.town_code else None
    history = {"open_tickets_of_caller": _open_tickets_then(ticket, evaluated_at, context),
               "calls_last_30_days": _calls_then(ticket, evaluated_at, context)}
    clock = {}
    workday = calendars.get("workday")
    if workday is not None:
        clock = {"working_time": workday.is_working_time(evaluated_at),
                 "holiday": workday.is_holiday(evaluated_at.astimezone(workday.tz).date())}

    facts = ticket_facts(ticket, town=town, history=history, clock=clock)
    facts["tags"] = _tags_then(ticket, evaluated_at, events)
    facts["priority"] = float(_priority_before(ticket, evaluated_at, events))
    return facts


def _evaluation_instant(ticket: Ticket, events: Sequence[TicketEvent]) -> datetime:
    """Return when the rules last evaluated the ticket: its latest menu choice, or else its creation."""
    choices = [as_aware_utc(event.at) for event in events if event.kind == "menu_choice"]
    return max([as_aware_utc(ticket.created_at), *choices])


def _tags_then(ticket: Ticket, evaluated_at: datetime, events: Sequence[TicketEvent]) -> list[str]:
    added_by_rules = {tag for entry in ticket.rule_trace or []
                      for tag in (entry.get("changes") or {}).get("add_tags", [])}
    added_later = {event.kind for event in events
                   if event.kind == "callback_needed" and as_aware_utc(event.at) > evaluated_at}
    return [tag for tag in ticket.tags or [] if tag not in added_by_rules and tag not in added_later]


def _priority_before(ticket: Ticket, evaluated_at: datetime, events: Sequence[TicketEvent]) -> int:
    if evaluated_at == as_aware_utc(ticket.created_at):
        return INTAKE_PRIORITY
    # A re-evaluation that changed the priority recorded the old value; one that did not left it as stored.
    for event in events:
        if event.kind == "priority" and as_aware_utc(event.at) == evaluated_at and event.from_value:
            return int(event.from_value.removeprefix("P"))
    return ticket.priority


def _open_tickets_then(ticket: Ticket, evaluated_at: datetime, context: _Context) -> int:
    count = 0
    for other_id, created_at in context.caller_tickets.get(ticket.caller_phone or "", []):
        if other_id == ticket.id or created_at > evaluated_at:
            continue
        changes = [status for at, status in context.statuses.get(other_id, []) if at <= evaluated_at]
        if (changes[-1] if changes else "new") in OPEN_STATUSES:
            count += 1
    return count


def _calls_then(ticket: Ticket, evaluated_at: datetime, context: _Context) -> int:
    # At intake the ticket's own call was not stored yet; at a menu choice it was.
    at_intake = evaluated_at == as_aware_utc(ticket.created_at)
    start = evaluated_at - timedelta(days=HISTORY_DAYS)
    return sum(1 for started_at in context.calls.get(ticket.caller_phone or "", [])
               if start <= started_at and (started_at < evaluated_at or (not at_intake and started_at == evaluated_at)))


def _check_reproduction(ticket: Ticket, own: RuleSet | None, facts: Mapping[str, Any],
                        report: SimulationReport) -> None:
    if own is None:
        return
    try:
        decision = own.evaluate_priority(facts)
    except (RuleError, ValueError, rule_engine.errors.EngineError):
        decision = None
    report.replayed_with_own_version += 1
    if decision is not None and (decision.priority, decision.queue_rank) == (ticket.priority, ticket.queue_rank):
        report.reproduced += 1
    else:
        report.not_reproduced.append(ticket.number)


def _changed_defaults(own: RuleSet | None, candidate: RuleSet) -> set[str]:
    """Return which defaults ("priority", "queue_rank") the candidate changed; empty when `own` is unknown."""
    if own is None:
        return set()
    changed = set()
    if own.default_priority != candidate.default_priority:
        changed.add("priority")
    if own.default_queue_rank != candidate.default_queue_rank:
        changed.add("queue_rank")
    return changed


def _compare(ticket: Ticket, evaluated_at: datetime, decision: PriorityDecision, stored_policy: str | None,
             policy: str, changed_defaults: set[str]) -> TicketChange | None:
    priority = queue_rank = sla_policy = None
    if decision.priority != ticket.priority:
        priority = Difference(f"P{ticket.priority}", f"P{decision.priority}",
                              _differing_rules(ticket.rule_trace, decision.trace, PRIORITY_EFFECTS,
                                               "priority" in changed_defaults))
    if decision.queue_rank != ticket.queue_rank:
        queue_rank = Difference(ticket.queue_rank, decision.queue_rank,
                                _differing_rules(ticket.rule_trace, decision.trace, ("queue_rank",),
                                                 "queue_rank" in changed_defaults))
    if stored_policy is not None and policy != stored_policy:
        sla_policy = Difference(stored_policy, policy)
    if priority is None and queue_rank is None and sla_policy is None:
        return None
    return TicketChange(number=ticket.number, created_at=as_aware_utc(ticket.created_at), evaluated_at=evaluated_at,
                        stored_version=ticket.rule_set_version, priority=priority, queue_rank=queue_rank,
                        sla_policy=sla_policy)


def _differing_rules(stored: Iterable[Mapping[str, Any]] | None, candidate: Iterable[Mapping[str, Any]],
                     keys: Sequence[str], defaults_changed: bool) -> tuple[str, ...]:
    """Return the rules whose effects on `keys` differ between two traces, in candidate order.

    "defaults" is added when the defaults changed, and is the whole result when no rule differs.
    """
    def effects(trace) -> dict[str, dict[str, Any]]:
        return {entry["rule"]: {key: value for key, value in (entry.get("changes") or {}).items() if key in keys}
                for entry in trace or []}

    before, after = effects(stored), effects(candidate)
    ordered = list(after) + [rule for rule in before if rule not in after]
    differing = tuple(rule for rule in ordered if before.get(rule, {}) != after.get(rule, {}))
    if defaults_changed or not differing:
        differing += (DEFAULTS,)
    return differing


def _load_context(session: Session, tickets: Sequence[Ticket]) -> _Context:
    ids = [ticket.id for ticket in tickets]
    phones = sorted({ticket.caller_phone for ticket in tickets if ticket.caller_phone})
    latest = max(as_aware_utc(ticket.created_at) for ticket in tickets)
    earliest = min(as_aware_utc(ticket.created_at) for ticket in tickets)

    events: dict[int, list[TicketEvent]] = defaultdict(list)
    for event in session.exec(select(TicketEvent).where(TicketEvent.ticket_id.in_(ids))
                              .where(TicketEvent.kind.in_(("menu_choice", "callback_needed", "priority")))
                              .order_by(TicketEvent.at, TicketEvent.id)).all():
        events[event.ticket_id].append(event)
    # A menu choice can come after the last ticket's creation, so history is loaded up to the latest evaluation.
    horizon = max([latest] + [as_aware_utc(event.at) for items in events.values() for event in items])

    policies: dict[int, str] = {}
    for clock in session.exec(select(SlaClock).where(SlaClock.ticket_id.in_(ids))
                              .where(SlaClock.target.in_(INTAKE_TARGETS)).order_by(SlaClock.id)).all():
        policies.setdefault(clock.ticket_id, clock.policy)

    calls, caller_tickets, statuses = _caller_history(session, phones, earliest - timedelta(days=HISTORY_DAYS),
                                                      horizon)
    towns = {town.code: town for town in session.exec(select(Town)).all()}
    return _Context(towns=towns, events=events, policies=policies, calls=calls, caller_tickets=caller_tickets,
                    statuses=statuses)


def _caller_history(session: Session, phones: Sequence[str], start: datetime, end: datetime):
    calls: dict[str, list[datetime]] = defaultdict(list)
    caller_tickets: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    statuses: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for batch in _chunks(phones, _CHUNK):
        for phone, started_at in session.exec(select(Call.from_phone, Call.started_at)
                                              .where(Call.from_phone.in_(batch))
                                              .where(Call.started_at >= start, Call.started_at <= end)).all():
            calls[phone].append(as_aware_utc(started_at))
        rows = session.exec(select(Ticket.id, Ticket.caller_phone, Ticket.created_at)
                            .where(Ticket.caller_phone.in_(batch), Ticket.created_at <= end)).all()
        for ticket_id, phone, created_at in rows:
            caller_tickets[phone].append((ticket_id, as_aware_utc(created_at)))
        for ids in _chunks([row[0] for row in rows], _CHUNK):
            for ticket_id, at, status in session.exec(
                select(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.to_value)
                .where(TicketEvent.ticket_id.in_(ids), TicketEvent.kind == "status", TicketEvent.at <= end)
                .order_by(TicketEvent.at, TicketEvent.id)
            ).all():
                statuses[ticket_id].append((as_aware_utc(at), status))
    return calls, caller_tickets, statuses


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
