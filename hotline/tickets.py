"""Tickets: numbering, rules applied, the status machine, claiming and the operators' queue order."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, func, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from hotline import checklists, referrers, system_reasons, webhooks
from hotline.events import new_event, record_event
from hotline.models import Agency, Call, ChecklistItem, Offer, SlaClock, Ticket, TicketCounter, TicketEvent
from hotline.nulls_last import NullsLast
from hotline.outbox import add_message, schedule_job
from hotline.rows import new_row, set_fields
from hotline.rules.facts import ticket_facts
from hotline.sla import clocks as sla_clocks
from hotline.towns import find_town
from hotline.validation import N_
from hotline.vocabulary import FINAL_STATUSES, OPEN_STATUSES, STATUSES, TRANSITIONS

log = logging.getLogger("hotline.tickets")

# Status changes that need a reason, because a supervisor will ask for one.
REASON_REQUIRED = {"waiting", "cancelled"}
REOPEN = ("resolved", "in_progress")
# The hotline has responded once a person has taken the ticket up; automatic dispatch does not count.
FIRST_RESPONSE_STATUSES = ("in_progress", "waiting", "resolved")
UNNUMBERED = "tickets_without_number"
# A new ticket's number until the day's next number replaces it in the same transaction. Its 48 random
# bits need only differ among the few tickets awaiting a number at once, and cost less than uuid4's read
# of the OS's random source.
PLACEHOLDER_PREFIX = "QP-NEW-"
# How far back the rules' caller history counts calls.
HISTORY_WINDOW = timedelta(days=30)


class TransitionError(ValueError):
    """A status change the status machine does not allow; `template` and `params` word it for people."""

    def __init__(self, template: str, code: str = "invalid_transition", field: str | None = "to", **params: Any):
        super().__init__(template % params)
        self.template = template
        self.code = code
        self.field = field
        self.params = params


def next_number(session: Session, now: datetime, tz) -> str:
    """Hand out the next QP-YYYYMMDD-NNNN number of the local day with one atomic upsert.

    The upsert locks the day's counter row until the transaction ends, so callers take the number as
    late as they can (see `assign_numbers`): every other new ticket of the day waits on that lock.
    """
    day = now.astimezone(tz).strftime("%Y%m%d")
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(TicketCounter)
        .values(day=day, last=1)
        .on_conflict_do_update(index_elements=["day"], set_={"last": TicketCounter.last + 1})
        .returning(TicketCounter.last)
    )
    last = session.execute(statement).scalar_one()
    return f"QP-{day}-{last:04d}"


def assign_numbers(session: Session, tz) -> None:
    """Give every ticket created in this transaction its real number; a no-op when there are none.

    Intake calls it as its last write, and `Runtime.transaction` calls it before commit for any ticket
    still waiting, so the counter row is locked only for the end of the transaction.
    """
    pending = session.info.pop(UNNUMBERED, [])
    for ticket in pending:
        set_committed_value(ticket, "number", write_number(session, ticket, tz))
        log.info("Tickets: created %s (%s, %s, P%s)", ticket.number, ticket.source, ticket.category,
                 ticket.priority)


def write_number(session: Session, ticket: Ticket, tz) -> str:
    """Take the next number of the ticket's local day, write it to the ticket's row and return it.

    On PostgreSQL one statement does both: the counter upsert runs in a CTE that the UPDATE reads.
    """
    if session.get_bind().dialect.name != "postgresql":
        number = next_number(session, ticket.created_at, tz)
        session.execute(update(Ticket).where(Ticket.id == ticket.id).values(number=number),
                        execution_options={"synchronize_session": False})
        return number

    day = ticket.created_at.astimezone(tz).strftime("%Y%m%d")
    counter = (
        postgresql.insert(TicketCounter)
        .values(day=day, last=1)
        .on_conflict_do_update(index_elements=["day"], set_={"last": TicketCounter.last + 1})
        .returning(TicketCounter.last)
        .cte("counter")
    )
    serial = select(cast(counter.c.last, String)).scalar_subquery()
    # Four digits at least, as next_number formats them; a day past 9999 tickets gets five, never a cut.
    padded = func.lpad(serial, func.greatest(4, func.length(serial)), "0")
    statement = (
        update(Ticket)
        .add_cte(counter)
        .where(Ticket.id == ticket.id)
        .values(number=literal(f"QP-{day}-") + padded)
        .returning(Ticket.number)
    )
    return session.execute(statement, execution_options={"synchronize_session": False}).scalar_one()


@dataclass(frozen=True)
class NewTicket:
    """A new ticket with every event, SLA clock and checklist item written for it so far."""

    ticket: Ticket
    events: list[TicketEvent]
    clocks: list[SlaClock]
    checklist_items: list[ChecklistItem] = field(default_factory=list)

    def dependent_rows(self) -> list[TicketEvent | SlaClock | ChecklistItem]:
        """Return the rows that carry the ticket's id, clocks first, so events follow what they describe."""
        return [*self.clocks, *self.checklist_items, *self.events]


def create_ticket(session: Session, runtime, now: datetime, actor: str, **fields: Any) -> Ticket:
    """Insert a ticket with its priority and SLA clocks; see `open_ticket`."""
    return open_ticket(session, runtime, now, actor, **fields).ticket


def open_ticket(session: Session, runtime, now: datetime, actor: str, history: dict[str, int] | None = None,
                **fields: Any) -> NewTicket:
    """Insert a ticket with its priority, its SLA clocks and an event for each.

    The ticket carries a unique placeholder number until `assign_numbers` runs.
    `history` is the caller's history when the caller has read it already (see `caller_history`).
    """
    new_ticket = plan_ticket(session, runtime, now, actor, history, **fields)
    ticket = new_ticket.ticket
    session.add(ticket)
    session.flush()

    session.info.setdefault(UNNUMBERED, []).append(ticket)
    for row in new_ticket.dependent_rows():
        row.ticket_id = ticket.id
    session.add_all(new_ticket.dependent_rows())
    if ticket.category == "agency_service":
        schedule_job(session, "dispatch_ticket", ticket.id)
    return new_ticket


def plan_ticket(session: Session, runtime, now: datetime, actor: str, history: dict[str, int] | None = None,
                **fields: Any) -> NewTicket:
    """Build a ticket with its priority, SLA clocks, checklist and events, without adding any of them to the session.

    The rules and the SLA policy run before the insert, so the ticket row is written once, with its
    priority and due_at. Only the town and, without `history`, the caller's history are read.
    """
    placeholder = f"{PLACEHOLDER_PREFIX}{random.getrandbits(48):012x}"
    ticket = new_row(Ticket, number=placeholder, created_at=now, updated_at=now, **fields)
    facts = facts_for(session, runtime, ticket, now, history)
    _set_priority(ticket, runtime.component("rules").evaluate_priority(facts), now)
    facts["priority"] = float(ticket.priority)
    clocks = sla_clocks.plan_intake_clocks(ticket, facts, runtime.component("sla_policies"),
                                           runtime.component("calendars"), now)

    created = new_event(ticket, "created", actor=actor, to_value=ticket.category, at=now,
                        data={"channel": ticket.channel, "source": ticket.source})
    items, checklist_events = checklists.plan_checklist(runtime, ticket, actor, now)
    events = [created, *sla_clocks.started_events(ticket, clocks, now), *checklist_events]
    return NewTicket(ticket, events, clocks, items)


def apply_rules(session: Session, runtime, ticket: Ticket, now: datetime, actor: str, reason: str) -> None:
    """Re-evaluate the priority rules and SLA policy of a ticket, recording every change as an event.

    The running clocks are recomputed for the new priority and policy. A ticket whose category became
    assisted_application gets its 帮办 checklist here, since every category change ends with this call.
    """
    facts = facts_for(session, runtime, ticket, now)
    decision = runtime.component("rules").evaluate_priority(facts)

    if decision.priority != ticket.priority and ticket.rule_set_version is not None:
        record_event(session, ticket, "priority", actor=actor, from_value=f"P{ticket.priority}",
                     to_value=f"P{decision.priority}", reason=reason, at=now)
    _set_priority(ticket, decision, now)
    session.add(ticket)

    facts["priority"] = float(ticket.priority)
    sla_clocks.recompute_clocks(session, ticket, facts, runtime.component("sla_policies"),
                                runtime.component("calendars"), now, actor=actor, reason=reason)
    checklists.ensure_checklist(session, runtime, ticket, actor, now)


def _set_priority(ticket: Ticket, decision, now: datetime) -> None:
    set_fields(ticket, priority=decision.priority, queue_rank=decision.queue_rank, priority_reasons=decision.reasons,
               rule_trace=decision.trace, rule_set_version=decision.version,
               tags=sorted(set(ticket.tags or []) | set(decision.added_tags)), updated_at=now)


def facts_for(session: Session, runtime, ticket: Ticket, now: datetime,
              history: dict[str, int] | None = None) -> dict[str, Any]:
    """Gather what rule conditions may read: the ticket, its town, the caller's history and the clock."""
    town = find_town(session, ticket.town_code) if ticket.town_code else None
    if history is None:
        history = caller_history(session, ticket, now)
    workday = runtime.component("calendars").get("workday")
    clock_facts = {}
    if workday is not None:
        clock_facts = {"working_time": workday.is_working_time(now),
                       "holiday": workday.is_holiday(now.astimezone(runtime.settings.timezone).date())}
    return ticket_facts(ticket, town=town, history=history, clock=clock_facts)


def caller_history(session: Session, ticket: Ticket, now: datetime) -> dict[str, int]:
    """Count the caller's other open tickets and their calls of the last 30 days, in one query."""
    if not ticket.caller_phone:
        return history_counts(None, None)
    counts = session.execute(select(*caller_history_counts(ticket.caller_phone, now - HISTORY_WINDOW,
                                                           ticket.id))).one()
    return history_counts(*counts)


def caller_history_counts(phone, since, exclude_ticket_id: int | None = None) -> tuple:
    """Return scalar subqueries counting the open tickets from `phone` and its calls started at `since` or later.

    `phone` and `since` are values or bind parameters, so a caller may build the query once and reuse it.
    """
    open_tickets = (
        select(func.count(Ticket.id))
        .where(Ticket.caller_phone == phone)
        .where(Ticket.status.in_(OPEN_STATUSES))
    )
    if exclude_ticket_id is not None:
        open_tickets = open_tickets.where(Ticket.id != exclude_ticket_id)
    calls = (
        select(func.count(Call.id))
        .where(Call.from_phone == phone)
        .where(Call.started_at >= since)
    )
    return open_tickets.scalar_subquery(), calls.scalar_subquery()


def history_counts(open_tickets: int | None, calls: int | None) -> dict[str, int]:
    """Return the caller-history facts of the rules from two counts; None counts as 0."""
    return {"open_tickets_of_caller": int(open_tickets or 0), "calls_last_30_days": int(calls or 0)}


def find_open_ticket_of_caller(session: Session, phone: str) -> Ticket | None:
    """Find the caller's most recent open ticket, which a new call joins instead of opening another."""
    return session.exec(
        select(Ticket)
        .where(Ticket.caller_phone == phone)
        .where(Ticket.status.in_(OPEN_STATUSES))
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(1)
    ).first()


def transition(session: Session, runtime, ticket: Ticket, to_status: str, actor: str, reason: str | None,
               now: datetime) -> None:
    """Move a ticket to `to_status` if the status machine allows it, with the SLA effects of the move."""
    from_status = ticket.status
    if to_status not in STATUSES:
        raise TransitionError(N_("Unknown status %(to_status)s."), code="invalid_value", to_status=to_status)
    if to_status not in TRANSITIONS.get(from_status, ()):
        raise TransitionError(N_("Cannot change status from %(from_status)s to %(to_status)s."),
                              from_status=from_status, to_status=to_status)
    if (to_status in REASON_REQUIRED or (from_status, to_status) == REOPEN) and not (reason or "").strip():
        raise TransitionError(N_("A reason is required to change status to %(to_status)s."), code="reason_required",
                              field="reason", to_status=to_status)
    if to_status == "resolved":
        _check_open_checklist(session, ticket, reason)

    set_status(session, runtime, ticket, to_status, actor, reason, now)


def _check_open_checklist(session: Session, ticket: Ticket, reason: str | None) -> None:
    """Refuse to resolve a ticket with 帮办 checklist items to do or in progress unless the reason names each."""
    still_open = checklists.open_items(session, ticket)
    if not still_open:
        return
    if not (reason or "").strip():
        raise TransitionError(N_("Checklist items %(items)s are not done; to resolve the ticket, give a reason "
                                 "that names each of them."), code="checklist_open", field="reason",
                              items=checklists.titles(still_open))
    unnamed = checklists.unnamed_items(still_open, reason)
    if unnamed:
        raise TransitionError(N_("The reason does not name the open checklist items %(items)s; name each of "
                                 "them to resolve the ticket."), code="checklist_reason_incomplete",
                              field="reason", items=checklists.titles(unnamed))


def set_status(session: Session, runtime, ticket: Ticket, to_status: str, actor: str, reason: str | None,
               now: datetime) -> None:
    """Change the status without the operator checks; dispatch uses it for dispatching and dispatched."""
    from_status = ticket.status
    if from_status == to_status:
        return
    calendars = runtime.component("calendars")
    policies = runtime.component("sla_policies")

    if from_status == "waiting":
        sla_clocks.resume_clocks(session, ticket, calendars, now, actor=actor, policies=policies)
    if to_status == "waiting":
        sla_clocks.pause_clocks(session, ticket, now, actor=actor, policies=policies)
    if to_status in FIRST_RESPONSE_STATUSES:
        sla_clocks.mark_met(session, ticket, ["first_response"], now, actor=actor, policies=policies,
                            calendars=calendars)
    if to_status == "resolved":
        sla_clocks.mark_met(session, ticket, ["resolution"], now, actor=actor, policies=policies,
                            calendars=calendars)
        ticket.resolved_at = now
    if to_status == "cancelled":
        _stop_clocks(session, ticket)
    if to_status in FINAL_STATUSES or (from_status == "dispatching" and to_status in ("in_progress", "waiting")):
        _withdraw_pending_offers(session, ticket, actor, now)

    ticket.status = to_status
    ticket.updated_at = now
    session.add(ticket)
    record_event(session, ticket, "status", actor=actor, from_value=from_status, to_value=to_status,
                 reason=reason, at=now)
    if (from_status, to_status) == REOPEN:
        ticket.resolved_at = None
        sla_clocks.ticket_reopened(session, runtime, ticket, now)
    referrers.notify_status_change(session, ticket, to_status)
    webhooks.queue_status_change(session, ticket, from_status, to_status, now)
    sla_clocks.refresh_ticket_due(session, ticket)
    log.info("Tickets: %s status %s -> %s by %s", ticket.number, from_status, to_status, actor)


def _stop_clocks(session: Session, ticket: Ticket) -> None:
    for clock in session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id)).all():
        if clock.state in ("running", "paused"):
            clock.state = "cancelled"
            session.add(clock)


def _withdraw_pending_offers(session: Session, ticket: Ticket, actor: str, now: datetime) -> None:
    """Cancel the ticket's pending offers when the ticket is finished or an operator took it over.

    An agency must never act on a family who asked to be called back later or whose case is closed.
    """
    offers = session.exec(select(Offer).where(Offer.ticket_id == ticket.id).where(Offer.state == "pending")).all()
    for offer in offers:
        offer.state = "cancelled"
        offer.responded_at = now
        offer.response_reason = system_reasons.OPERATOR_TOOK_OVER
        session.add(offer)
        record_event(session, ticket, "offer_cancelled", actor=actor, at=now, reason=system_reasons.OPERATOR_TOOK_OVER,
                     data={"offer_id": offer.id, "attempt": offer.attempt})
        agency = session.get(Agency, offer.agency_id)
        add_message(session, "sms", agency.contact_phone,
                    f"【59200496】派单 {offer.code}（工单 {ticket.number}）已撤销，无需再处理。"
                    "原因：话务员已接手或工单已结束。",
                    idempotency_key=f"offer:{offer.id}:cancelled", ticket_id=ticket.id)
    if offers:
        # The agency's acceptance clock has nothing left to measure.
        for clock in session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id)
                                  .where(SlaClock.target == "dispatch_accept")).all():
            if clock.state in ("running", "paused"):
                clock.state = "cancelled"
                session.add(clock)


def lock_ticket(session: Session, ticket: Ticket) -> None:
    """Lock the ticket's row until the transaction ends, and reload it as the previous holder committed it.

    PostgreSQL takes FOR NO KEY UPDATE. A second transaction that locks or updates the row waits, but one
    that only inserts a row referring to the ticket (an event, an offer, an SLA clock) does not. So the
    sweeps, which add events while they hold other rows, cannot deadlock with it. SQLite ignores the
    clause, but there every write transaction starts with BEGIN IMMEDIATE (hotline.store), which
    serialises them all.
    """
    session.refresh(ticket, with_for_update={"key_share": True})


def claim(session: Session, runtime, ticket: Ticket, user_id: int, actor: str, now: datetime) -> bool:
    """Assign an open, unassigned ticket to `user_id`; return False when it is assigned or finished.

    The conditional UPDATE is the lock: of two operators claiming at once, exactly one sees a row count
    of 1, on SQLite and PostgreSQL alike.
    """
    result = session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id)
        .where(Ticket.assigned_to_id.is_(None))
        .where(Ticket.status.in_(OPEN_STATUSES))
        .values(assigned_to_id=user_id, claimed_at=now, updated_at=now)
    )
    if result.rowcount != 1:
        return False

    session.refresh(ticket)
    record_event(session, ticket, "claimed", actor=actor, to_value=str(user_id), at=now)
    if ticket.status == "new":
        set_status(session, runtime, ticket, "in_progress", actor, system_reasons.CLAIMED, now)
    else:
        sla_clocks.mark_met(session, ticket, ["first_response"], now, actor=actor,
                            policies=runtime.component("sla_policies"), calendars=runtime.component("calendars"))
    return True


def queue_order():
    """ORDER BY of the operators' queue: priority, then rule precedence, then the earliest due.

    Tickets without a running clock come last within their rank. The terms are those of the indexes
    ix_ticket_open_queue and ix_ticket_queue_order, NullsLast included, so PostgreSQL and SQLite read a
    page off an index instead of sorting every row.
    """
    return (
        Ticket.priority.asc(),
        Ticket.queue_rank.asc(),
        NullsLast(Ticket.due_at),
        Ticket.created_at.asc(),
        Ticket.id.asc(),
    )


def is_open():
    """WHERE term for open tickets, which matches the WHERE term of the partial index ix_ticket_open_queue.

    The statuses are written into the SQL, not bound, because SQLite uses a partial index only when the
    query repeats the index's WHERE term, and `status IN (?, ...)` does not repeat `status IN ('new', ...)`.
    """
    return Ticket.status.in_(bindparam("open_statuses", list(OPEN_STATUSES), expanding=True, literal_execute=True))
