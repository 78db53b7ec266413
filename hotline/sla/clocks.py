"""SLA clocks of a ticket: start, stop when met, pause while waiting, recompute when the ticket changes.

Every function takes an open session and adds rows to it without committing, so clock changes commit
together with the ticket change that caused them. A clock is breached once now reaches its due_at
(due_at <= now), which is the same test the breach sweep uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from hotline import outbox
from hotline.clock import SHANGHAI, as_aware_utc, isoformat, local
from hotline.events import SYSTEM, record_event
from hotline.models import SlaClock, Ticket
from hotline.sla.calendars import BusinessCalendar
from hotline.sla.policies import PolicySet, TargetSpec

log = logging.getLogger("hotline.sla")

ACTIVE_STATES = ("running", "paused")
TARGET_LABELS = {
    "first_response": "首次响应",
    "dispatch_accept": "派单接单",
    "resolution": "办结",
}


def start_clocks(
    session: Session,
    ticket: Ticket,
    facts: Mapping[str, Any],
    policies: PolicySet,
    calendars: dict[str, BusinessCalendar],
    now: datetime,
) -> list[SlaClock]:
    """Start a clock for each target of the policy that fits the ticket, then set ticket.due_at.

    A target that already has a clock on this ticket is skipped, so calling this twice starts nothing
    twice. The ticket's own priority and category override those in `facts`.
    """
    _ensure_ticket_id(session, ticket)
    policy = policies.choose(_ticket_facts(ticket, facts))
    existing = {clock.target for clock in _ticket_clocks(session, ticket)}

    started = []
    for spec in policy.targets_for(ticket.priority).values():
        if spec.target in existing:
            continue
        deadline = calendars[spec.calendar].add(now, spec.duration_seconds)
        clock = SlaClock(
            ticket_id=ticket.id, target=spec.target, policy=policy.id, calendar=spec.calendar,
            duration_seconds=spec.duration_seconds, started_at=now, due_at=deadline.due_at,
            provisional=deadline.provisional,
        )
        session.add(clock)
        started.append(clock)
        record_event(session, ticket, kind="sla_started", actor=SYSTEM, to_value=isoformat(clock.due_at), at=now,
                     data={"target": spec.target, "policy": policy.id, "calendar": spec.calendar,
                           "due_at": isoformat(clock.due_at), "provisional": clock.provisional})
        log.info("SLA: ticket %s clock %s started under policy %s, due %s%s", ticket.number, spec.target,
                 policy.id, isoformat(clock.due_at), " (provisional)" if clock.provisional else "")

    session.flush()
    refresh_ticket_due(session, ticket)
    return started


def recompute_clocks(
    session: Session,
    ticket: Ticket,
    facts: Mapping[str, Any],
    policies: PolicySet,
    calendars: dict[str, BusinessCalendar],
    now: datetime,
    actor: str,
    reason: str,
) -> None:
    """Re-choose the policy after a priority or category change and move each active clock's deadline.

    The new due_at counts from the clock's start plus the working time it stood paused. A paused clock
    is judged at the start of its pause, a running one at `now`. If the new due_at is later, the clock
    is no longer breached. Otherwise it is breached at that due_at. Met clocks stay as they are. Each
    changed clock gets one `sla_recomputed` event, and a clock breached by the change also gets a
    supervisor notice.
    """
    policy = policies.choose(_ticket_facts(ticket, facts))
    specs = policy.targets_for(ticket.priority)

    for clock in _ticket_clocks(session, ticket):
        if clock.state not in ACTIVE_STATES:
            continue
        spec = specs.get(clock.target)
        if spec is None:
            log.info("SLA: ticket %s clock %s kept as it was: policy %s has no such target",
                     ticket.number, clock.target, policy.id)
            continue
        _apply_target(session, ticket, clock, policy.id, spec, calendars, now, actor, reason)

    refresh_ticket_due(session, ticket)


def _apply_target(
    session: Session,
    ticket: Ticket,
    clock: SlaClock,
    policy_id: str,
    spec: TargetSpec,
    calendars: dict[str, BusinessCalendar],
    now: datetime,
    actor: str,
    reason: str,
) -> None:
    calendar = calendars[spec.calendar]
    deadline = calendar.add(as_aware_utc(clock.started_at), spec.duration_seconds + clock.paused_seconds)
    previous_due = as_aware_utc(clock.due_at)
    previous_policy = clock.policy
    unchanged = (clock.policy, clock.calendar, clock.duration_seconds, previous_due) == (
        policy_id, spec.calendar, spec.duration_seconds, deadline.due_at)
    if unchanged:
        return

    clock.policy = policy_id
    clock.calendar = spec.calendar
    clock.duration_seconds = spec.duration_seconds
    clock.due_at = deadline.due_at
    clock.provisional = deadline.provisional
    was_breached = clock.breached_at is not None
    reference = as_aware_utc(clock.paused_at) if clock.state == "paused" else now
    clock.breached_at = deadline.due_at if deadline.due_at <= reference else None
    session.add(clock)

    record_event(session, ticket, kind="sla_recomputed", actor=actor, reason=reason, at=now,
                 from_value=isoformat(previous_due), to_value=isoformat(clock.due_at),
                 data={"target": clock.target, "policy": policy_id, "previous_policy": previous_policy,
                       "calendar": spec.calendar, "due_at": isoformat(clock.due_at),
                       "breached_at": isoformat(clock.breached_at)})
    log.info("SLA: ticket %s clock %s moved from %s to %s by %s (%s)", ticket.number, clock.target,
             isoformat(previous_due), isoformat(clock.due_at), actor, "breached" if clock.breached_at else "on time")

    if clock.breached_at is not None and not was_breached:
        session.flush()
        add_breach_notice(session, ticket, clock)


def mark_met(session: Session, ticket: Ticket, targets: Iterable[str], now: datetime, actor: str) -> None:
    """Stop the active clocks of `targets` as met at `now`. A clock met at or after its due_at is breached."""
    requested = set(targets)
    for clock in _ticket_clocks(session, ticket):
        if clock.target not in requested or clock.state not in ACTIVE_STATES:
            continue

        # A paused clock stood still at paused_at, so lateness is judged at that instant.
        stopped_at = as_aware_utc(clock.paused_at) if clock.state == "paused" else now
        if clock.breached_at is None and as_aware_utc(clock.due_at) <= stopped_at:
            clock.breached_at = clock.due_at
        clock.state = "met"
        clock.met_at = now
        clock.paused_at = None
        session.add(clock)

        record_event(session, ticket, kind="sla_met", actor=actor, at=now,
                     data={"target": clock.target, "due_at": isoformat(clock.due_at), "met_at": isoformat(now),
                           "late": clock.breached_at is not None})
        log.info("SLA: ticket %s clock %s met by %s%s", ticket.number, clock.target, actor,
                 " late" if clock.breached_at is not None else "")

    refresh_ticket_due(session, ticket)


def pause_clocks(session: Session, ticket: Ticket, now: datetime, actor: str) -> None:
    """Pause the running clocks of a ticket that is waiting for the caller.

    A clock already past its due_at keeps running, because pausing it would hide a breach the sweep
    has not flagged yet.
    """
    for clock in _ticket_clocks(session, ticket):
        if clock.state != "running" or as_aware_utc(clock.due_at) <= now:
            continue
        clock.state = "paused"
        clock.paused_at = now
        session.add(clock)
        record_event(session, ticket, kind="sla_paused", actor=actor, at=now,
                     data={"target": clock.target, "due_at": isoformat(clock.due_at)})
        log.info("SLA: ticket %s clock %s paused by %s", ticket.number, clock.target, actor)

    refresh_ticket_due(session, ticket)


def resume_clocks(
    session: Session, ticket: Ticket, calendars: dict[str, BusinessCalendar], now: datetime, actor: str
) -> None:
    """Restart the paused clocks of a ticket, moving each due_at later by the working time it stood paused."""
    for clock in _ticket_clocks(session, ticket):
        if clock.state != "paused":
            continue
        calendar = calendars[clock.calendar]
        pause = calendar.elapsed(as_aware_utc(clock.paused_at), now)
        previous_due = as_aware_utc(clock.due_at)

        clock.paused_seconds += pause.seconds
        deadline = calendar.add(as_aware_utc(clock.started_at), clock.duration_seconds + clock.paused_seconds)
        clock.due_at = deadline.due_at
        clock.provisional = deadline.provisional or pause.provisional
        clock.state = "running"
        clock.paused_at = None
        session.add(clock)

        record_event(session, ticket, kind="sla_resumed", actor=actor, at=now,
                     from_value=isoformat(previous_due), to_value=isoformat(clock.due_at),
                     data={"target": clock.target, "paused_seconds": pause.seconds, "due_at": isoformat(clock.due_at)})
        log.info("SLA: ticket %s clock %s resumed by %s after %s working seconds, due %s", ticket.number,
                 clock.target, actor, pause.seconds, isoformat(clock.due_at))

    refresh_ticket_due(session, ticket)


def refresh_ticket_due(session: Session, ticket: Ticket) -> None:
    """Set ticket.due_at to the earliest due_at of its running clocks, or None when none is running."""
    running = [as_aware_utc(clock.due_at) for clock in _ticket_clocks(session, ticket) if clock.state == "running"]
    ticket.due_at = min(running) if running else None
    session.add(ticket)


def clock_view(clock: SlaClock) -> dict[str, Any]:
    """Describe a clock for the API. A running or met clock with breached_at set shows as "breached"."""
    state = clock.state
    if state in ("running", "met") and clock.breached_at is not None:
        state = "breached"
    return {
        "target": clock.target,
        "policy": clock.policy,
        "calendar": clock.calendar,
        "due_at": isoformat(clock.due_at),
        "state": state,
        "breached_at": isoformat(clock.breached_at),
        "paused_seconds": clock.paused_seconds,
        "provisional": clock.provisional,
        "started_at": isoformat(clock.started_at),
    }


def add_breach_notice(session: Session, ticket: Ticket, clock: SlaClock) -> None:
    """Queue one supervisor message for a breached clock. Its idempotency key makes a repeat a no-op."""
    label = TARGET_LABELS.get(clock.target, clock.target)
    due = local(clock.due_at, SHANGHAI).strftime("%Y-%m-%d %H:%M")
    body = f"【59200496】工单 {ticket.number} 的「{label}」已超时（时限 {due}，北京时间），请督办。"
    outbox.add_message(session, channel="supervisor", recipient=outbox.SUPERVISOR, body=body,
                       idempotency_key=f"sla-breach:{clock.id}", ticket_id=ticket.id)


def _ticket_clocks(session: Session, ticket: Ticket) -> list[SlaClock]:
    return list(session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)))


def _ticket_facts(ticket: Ticket, facts: Mapping[str, Any]) -> dict[str, Any]:
    return {**facts, "priority": float(ticket.priority), "category": ticket.category}


def _ensure_ticket_id(session: Session, ticket: Ticket) -> None:
    if ticket.id is None:
        session.add(ticket)
        session.flush()
