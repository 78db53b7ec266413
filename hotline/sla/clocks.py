"""SLA clocks of a ticket: start, stop when met, pause while waiting, recompute when the ticket changes.

Every function takes an open session and adds rows to it without committing, so clock changes commit
together with the ticket change that caused them. A clock is breached once now reaches its due_at
(due_at <= now), which is the same test the breach sweep uses.

Each target has its own clock and owner: first_response and resolution start at intake,
dispatch_accept when the first offer goes out, on_site when an agency accepts, follow_up when the
ticket is resolved. Functions that run inside a ticket change without the runtime at hand take the
policies and calendars of `hotline.runtime.current()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlmodel import Session, select

from hotline import outbox
from hotline.clock import SHANGHAI, as_aware_utc, isoformat, local
from hotline.events import SYSTEM, new_event, record_event
from hotline.models import SlaClock, Ticket, TicketEvent
from hotline.rows import new_row
from hotline.sla.calendars import BusinessCalendar
from hotline.sla.policies import TARGET_OWNERS, Policy, PolicySet, TargetSpec
from hotline.vocabulary import SLA_TARGETS

log = logging.getLogger("hotline.sla")

ACTIVE_STATES = ("running", "paused")
INTAKE_TARGETS = ("first_response", "resolution")
TARGET_LABELS = {target: labels[0] for target, labels in SLA_TARGETS.items()}
# Ticket statuses in which a follow-up call is still to come or already made.
FOLLOW_UP_STATUSES = ("resolved", "closed")


def start_clocks(
    session: Session,
    ticket: Ticket,
    facts: Mapping[str, Any],
    policies: PolicySet,
    calendars: dict[str, BusinessCalendar],
    now: datetime,
) -> list[SlaClock]:
    """Start the intake targets (first_response, resolution) of the policy that fits the ticket.

    A target that already has a clock on this ticket is skipped, so calling this twice starts nothing
    twice. The ticket's own priority and category override those in `facts`.
    """
    _ensure_ticket_id(session, ticket)
    policy = policies.choose(_ticket_facts(ticket, facts))
    started = []
    for target in INTAKE_TARGETS:
        clock = _start(session, ticket, policy, target, calendars, now)
        if clock is not None:
            started.append(clock)

    session.flush()
    _refresh(session, ticket)
    return started


def start_target(
    session: Session,
    ticket: Ticket,
    target: str,
    facts: Mapping[str, Any],
    policies: PolicySet,
    calendars: dict[str, BusinessCalendar],
    now: datetime,
) -> SlaClock | None:
    """Start the clock of one target if the ticket's policy lists it and it is not running already.

    A cancelled clock of the target (a follow-up of a reopened ticket) starts again from `now`.
    """
    _ensure_ticket_id(session, ticket)
    policy = policies.choose(_ticket_facts(ticket, facts))
    clock = _start(session, ticket, policy, target, calendars, now)
    session.flush()
    _refresh(session, ticket)
    return clock


def offer_sent(session: Session, runtime, ticket: Ticket, now: datetime) -> SlaClock | None:
    """An offer went to an agency: start dispatch_accept. A later offer keeps the first one's clock."""
    return _start_with_runtime(session, runtime, ticket, "dispatch_accept", now)


def offer_accepted(session: Session, runtime, ticket: Ticket, now: datetime, actor: str) -> SlaClock | None:
    """An agency accepted: dispatch_accept is met and on_site starts. No other clock's due_at moves."""
    mark_met(session, ticket, ["dispatch_accept"], now, actor=actor)
    return _start_with_runtime(session, runtime, ticket, "on_site", now)


def ticket_reopened(session: Session, runtime, ticket: Ticket, now: datetime) -> SlaClock | None:
    """Run the resolution clock of a reopened ticket again, from `now` with a fresh deadline.

    The earlier resolution stays in the timeline as its sla_met event; the clock row itself restarts.
    """
    clock = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id,
                                                SlaClock.target == "resolution")).first()
    if clock is not None and clock.state == "met":
        clock.state = "cancelled"
        session.add(clock)
    return _start_with_runtime(session, runtime, ticket, "resolution", now)


def _start_with_runtime(session: Session, runtime, ticket: Ticket, target: str, now: datetime) -> SlaClock | None:
    from hotline.tickets import facts_for

    facts = facts_for(session, runtime, ticket, now)
    return start_target(session, ticket, target, facts, runtime.component("sla_policies"),
                        runtime.component("calendars"), now)


def _start(
    session: Session, ticket: Ticket, policy: Policy, target: str, calendars: dict[str, BusinessCalendar],
    now: datetime,
) -> SlaClock | None:
    spec = policy.targets_for(ticket.priority).get(target)
    if spec is None:
        return None
    clock = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id, SlaClock.target == target)).first()
    if clock is not None and clock.state != "cancelled":
        return None

    clock = clock or SlaClock(ticket_id=ticket.id, target=target, policy=policy.id, calendar=spec.calendar,
                              duration_seconds=spec.duration_seconds, started_at=now, due_at=now)
    _run_from(clock, policy, spec, calendars, now)
    session.add(clock)
    session.flush()
    _record_started(session, ticket, clock, now)
    return clock


def plan_intake_clocks(
    ticket: Ticket,
    facts: Mapping[str, Any],
    policies: PolicySet,
    calendars: dict[str, BusinessCalendar],
    now: datetime,
) -> list[SlaClock]:
    """Build the intake clocks of a ticket that is not inserted yet, and set the ticket's due_at.

    Nothing touches the database, so intake can insert the ticket once with its deadline, and the clocks
    and their `started_events` with it.
    """
    policy = policies.choose(_ticket_facts(ticket, facts))
    specs = policy.targets_for(ticket.priority)
    clocks = []
    for target in INTAKE_TARGETS:
        spec = specs.get(target)
        if spec is None:
            continue
        # Every value at once: assigning the fields of a new clock one by one costs more than computing them.
        clocks.append(new_row(SlaClock, target=target, **_running_values(policy, spec, calendars, now)))

    running = [as_aware_utc(clock.due_at) for clock in clocks]
    ticket.due_at = min(running) if running else None
    return clocks


def started_events(ticket: Ticket, clocks: list[SlaClock], now: datetime) -> list[TicketEvent]:
    """Build the sla_started events of the clocks from `plan_intake_clocks`, without adding them to a session."""
    return [_started_event(ticket, clock, now) for clock in clocks]


def _run_from(clock: SlaClock, policy: Policy, spec: TargetSpec, calendars: dict[str, BusinessCalendar],
              now: datetime) -> None:
    for name, value in _running_values(policy, spec, calendars, now).items():
        setattr(clock, name, value)


def _running_values(policy: Policy, spec: TargetSpec, calendars: dict[str, BusinessCalendar],
                    now: datetime) -> dict[str, Any]:
    """Return the fields of a clock of `spec` that starts running at `now`, with its deadlines."""
    values = {"policy": policy.id, "calendar": spec.calendar, "duration_seconds": spec.duration_seconds,
              "owner": spec.owner, "started_at": now, "state": "running", "paused_at": None, "paused_seconds": 0,
              "breached_at": None, "met_at": None, "warned_at": None}
    values.update(_deadlines(as_aware_utc(now), 0, None, spec, calendars[spec.calendar]))
    return values


def _record_started(session: Session, ticket: Ticket, clock: SlaClock, now: datetime) -> TicketEvent:
    event = _started_event(ticket, clock, now)
    session.add(event)
    return event


def _started_event(ticket: Ticket, clock: SlaClock, now: datetime) -> TicketEvent:
    due_at = isoformat(clock.due_at)
    log.info("SLA: ticket %s clock %s started under policy %s, due %s%s", ticket.number, clock.target,
             clock.policy, due_at, " (provisional)" if clock.provisional else "")
    return new_event(ticket, kind="sla_started", actor=SYSTEM, to_value=due_at, at=now,
                     data={"target": clock.target, "owner": clock.owner, "policy": clock.policy,
                           "calendar": clock.calendar, "due_at": due_at,
                           "warn_at": isoformat(clock.warn_at), "provisional": clock.provisional})


def schedule(clock: SlaClock, spec: TargetSpec, calendar: BusinessCalendar) -> None:
    """Set due_at, warn_at, provisional and next_check_at from the start, the duration and the paused time."""
    deadlines = _deadlines(as_aware_utc(clock.started_at), clock.paused_seconds, clock.warned_at, spec, calendar)
    for name, value in deadlines.items():
        setattr(clock, name, value)


def _deadlines(started: datetime, paused_seconds: int, warned_at: datetime | None, spec: TargetSpec,
               calendar: BusinessCalendar) -> dict[str, Any]:
    """Return due_at, warn_at, provisional and next_check_at of a clock started at `started`."""
    deadline = calendar.add(started, spec.duration_seconds + paused_seconds)
    warn_at, provisional = None, deadline.provisional
    offset = spec.warn_offset_seconds
    if offset is not None:
        warning = calendar.add(started, offset + paused_seconds)
        warn_at, provisional = warning.due_at, provisional or warning.provisional
    return {"due_at": deadline.due_at, "warn_at": warn_at, "provisional": provisional,
            "next_check_at": _next_check(deadline.due_at, warn_at, warned_at)}


def next_check(clock: SlaClock) -> datetime:
    """The warning instant while a warning is still to come, else the due instant."""
    return _next_check(clock.due_at, clock.warn_at, clock.warned_at)


def _next_check(due_at: datetime, warn_at: datetime | None, warned_at: datetime | None) -> datetime:
    warning_ahead = warn_at is not None and warned_at is None
    if warning_ahead and as_aware_utc(warn_at) < as_aware_utc(due_at):
        return as_aware_utc(warn_at)
    return as_aware_utc(due_at)


def spec_of(clock: SlaClock, policies: PolicySet) -> TargetSpec:
    """The clock's target as its policy defines it now, or its stored figures without a warning."""
    policy = policies.by_id(clock.policy)
    for specs in (policy.targets.values() if policy else ()):
        spec = specs.get(clock.target)
        if spec is not None and (spec.duration_seconds, spec.calendar) == (clock.duration_seconds, clock.calendar):
            return spec
    return TargetSpec(target=clock.target, duration_seconds=clock.duration_seconds, calendar=clock.calendar)


@event.listens_for(SlaClock, "before_insert")
def _default_next_check(_mapper, _connection, clock: SlaClock) -> None:
    default_next_check(clock)


def default_next_check(clock: SlaClock) -> None:
    """Give a clock inserted without a next check its due instant, so the sweep still finds it.

    The ORM calls this before every insert of a clock. Code that inserts clocks without the ORM calls it itself.
    """
    if clock.next_check_at is None and clock.state == "running":
        clock.next_check_at = clock.due_at


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

    _refresh(session, ticket)


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
    previous_due = as_aware_utc(clock.due_at)
    previous_warn = clock.warn_at and as_aware_utc(clock.warn_at)
    previous_policy = clock.policy
    clock.policy, clock.calendar, clock.duration_seconds = policy_id, spec.calendar, spec.duration_seconds
    schedule(clock, spec, calendars[spec.calendar])
    if (previous_policy, as_aware_utc(clock.due_at), clock.warn_at and as_aware_utc(clock.warn_at)) == (
            policy_id, previous_due, previous_warn):
        return

    was_breached = clock.breached_at is not None
    reference = as_aware_utc(clock.paused_at) if clock.state == "paused" else now
    clock.breached_at = clock.due_at if as_aware_utc(clock.due_at) <= reference else None
    session.add(clock)

    record_event(session, ticket, kind="sla_recomputed", actor=actor, reason=reason, at=now,
                 from_value=isoformat(previous_due), to_value=isoformat(clock.due_at),
                 data={"target": clock.target, "policy": policy_id, "previous_policy": previous_policy,
                       "calendar": spec.calendar, "due_at": isoformat(clock.due_at),
                       "warn_at": isoformat(clock.warn_at), "breached_at": isoformat(clock.breached_at)})
    log.info("SLA: ticket %s clock %s moved from %s to %s by %s (%s)", ticket.number, clock.target,
             isoformat(previous_due), isoformat(clock.due_at), actor, "breached" if clock.breached_at else "on time")

    if clock.breached_at is not None and not was_breached:
        session.flush()
        add_breach_notice(session, ticket, clock)


def mark_met(
    session: Session, ticket: Ticket, targets: Iterable[str], now: datetime, actor: str,
    policies: PolicySet | None = None, calendars: dict[str, BusinessCalendar] | None = None,
) -> None:
    """Stop the active clocks of `targets` as met at `now`. A clock met at or after its due_at is breached.

    Meeting resolution also meets on_site, drops a dispatch_accept that no agency answered, and
    starts follow_up.
    """
    requested = set(targets)
    if "resolution" in requested:
        requested.add("on_site")
    for clock in _ticket_clocks(session, ticket):
        if clock.state not in ACTIVE_STATES:
            continue
        if clock.target in requested:
            _meet(session, ticket, clock, now, actor)
        elif clock.target == "dispatch_accept" and "resolution" in requested:
            clock.state = "cancelled"
            session.add(clock)

    if "resolution" in requested:
        _start_follow_up(session, ticket, now, policies, calendars)
    _refresh(session, ticket)


def _start_follow_up(
    session: Session, ticket: Ticket, now: datetime, policies: PolicySet | None,
    calendars: dict[str, BusinessCalendar] | None,
) -> None:
    from hotline.runtime import current
    from hotline.tickets import facts_for

    runtime = current()
    start_target(session, ticket, "follow_up", facts_for(session, runtime, ticket, now),
                 policies or runtime.component("sla_policies"),
                 calendars if calendars is not None else runtime.component("calendars"), now)


def _meet(session: Session, ticket: Ticket, clock: SlaClock, now: datetime, actor: str) -> None:
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


def pause_clocks(
    session: Session, ticket: Ticket, now: datetime, actor: str, policies: PolicySet | None = None
) -> None:
    """Pause the running clocks that the ticket's policy names in pause_while_waiting.

    A clock already past its due_at keeps running, because pausing it would hide a breach the sweep
    has not flagged yet.
    """
    policies, _ = _components(policies, {})
    for clock in _ticket_clocks(session, ticket):
        if clock.state != "running" or as_aware_utc(clock.due_at) <= now:
            continue
        if clock.target not in _pausing_targets(policies, clock.policy):
            continue
        clock.state = "paused"
        clock.paused_at = now
        session.add(clock)
        record_event(session, ticket, kind="sla_paused", actor=actor, at=now,
                     data={"target": clock.target, "due_at": isoformat(clock.due_at)})
        log.info("SLA: ticket %s clock %s paused by %s", ticket.number, clock.target, actor)

    _refresh(session, ticket)


def _pausing_targets(policies: PolicySet, policy_id: str) -> frozenset[str]:
    policy = policies.by_id(policy_id)
    if policy is not None:
        return policy.pause_while_waiting
    return frozenset(target for target, owner in TARGET_OWNERS.items() if owner == "hotline")


def resume_clocks(
    session: Session, ticket: Ticket, calendars: dict[str, BusinessCalendar], now: datetime, actor: str,
    policies: PolicySet | None = None,
) -> None:
    """Restart the paused clocks of a ticket, moving each due_at later by the working time it stood paused."""
    policies, _ = _components(policies, calendars)
    for clock in _ticket_clocks(session, ticket):
        if clock.state != "paused":
            continue
        calendar = calendars[clock.calendar]
        pause = calendar.elapsed(as_aware_utc(clock.paused_at), now)
        previous_due = as_aware_utc(clock.due_at)

        clock.paused_seconds += pause.seconds
        schedule(clock, spec_of(clock, policies), calendar)
        clock.provisional = clock.provisional or pause.provisional
        clock.state = "running"
        clock.paused_at = None
        session.add(clock)

        record_event(session, ticket, kind="sla_resumed", actor=actor, at=now,
                     from_value=isoformat(previous_due), to_value=isoformat(clock.due_at),
                     data={"target": clock.target, "paused_seconds": pause.seconds, "due_at": isoformat(clock.due_at)})
        log.info("SLA: ticket %s clock %s resumed by %s after %s working seconds, due %s", ticket.number,
                 clock.target, actor, pause.seconds, isoformat(clock.due_at))

    _refresh(session, ticket)


def refresh_ticket_due(session: Session, ticket: Ticket) -> None:
    """Set ticket.due_at to the earliest due_at of its running clocks, or None when none is running.

    Every status change ends here with the new status set, so this also keeps follow_up in step with
    it: a closed ticket has had its follow-up call, so follow_up is met at ticket.updated_at; a
    reopened ticket has no follow-up due, so follow_up is cancelled until the next resolution starts
    it again.
    """
    for clock in _ticket_clocks(session, ticket):
        if clock.target != "follow_up" or clock.state not in ACTIVE_STATES:
            continue
        if ticket.status == "closed":
            _meet(session, ticket, clock, as_aware_utc(ticket.updated_at), SYSTEM)
        elif ticket.status not in FOLLOW_UP_STATUSES:
            clock.state = "cancelled"
            session.add(clock)
    _refresh(session, ticket)


def _refresh(session: Session, ticket: Ticket) -> None:
    running = [as_aware_utc(clock.due_at) for clock in _ticket_clocks(session, ticket) if clock.state == "running"]
    ticket.due_at = min(running) if running else None
    session.add(ticket)


def working_seconds(clock: SlaClock, calendar: BusinessCalendar, now: datetime) -> int:
    """Working time the clock has counted so far: from its start to its stop, minus the time it stood paused."""
    if clock.state == "met":
        end = as_aware_utc(clock.met_at)
    elif clock.state == "paused":
        end = as_aware_utc(clock.paused_at)
    else:
        end = max(now, as_aware_utc(clock.started_at))
    return calendar.elapsed(as_aware_utc(clock.started_at), end).seconds - clock.paused_seconds


def clock_view(clock: SlaClock) -> dict[str, Any]:
    """Describe a clock for the API. A running or met clock with breached_at set shows as "breached"."""
    state = clock.state
    if state in ("running", "met") and clock.breached_at is not None:
        state = "breached"
    return {
        "target": clock.target,
        "owner": clock.owner,
        "policy": clock.policy,
        "calendar": clock.calendar,
        "due_at": isoformat(clock.due_at),
        "warn_at": isoformat(clock.warn_at),
        "state": state,
        "breached_at": isoformat(clock.breached_at),
        "paused_seconds": clock.paused_seconds,
        "provisional": clock.provisional,
        "started_at": isoformat(clock.started_at),
    }


def breach_notice_body(ticket: Ticket, clock: SlaClock) -> str:
    label = TARGET_LABELS.get(clock.target, clock.target)
    due = local(clock.due_at, SHANGHAI).strftime("%Y-%m-%d %H:%M")
    return f"【59200496】工单 {ticket.number} 的「{label}」已超时（时限 {due}，北京时间），请督办。"


def warning_notice_body(ticket: Ticket, clock: SlaClock) -> str:
    label = TARGET_LABELS.get(clock.target, clock.target)
    due = local(clock.due_at, SHANGHAI).strftime("%Y-%m-%d %H:%M")
    owner = "代理机构" if clock.owner == "agency" else "热线"
    return f"【59200496】工单 {ticket.number} 的「{label}」（{owner}负责）即将超时，时限 {due}（北京时间），请跟进。"


def add_breach_notice(session: Session, ticket: Ticket, clock: SlaClock) -> None:
    """Queue one supervisor message for a breached clock. Its idempotency key makes a repeat a no-op."""
    body = breach_notice_body(ticket, clock)
    outbox.add_message(session, channel="supervisor", recipient=outbox.SUPERVISOR, body=body,
                       idempotency_key=f"sla-breach:{clock.id}", ticket_id=ticket.id)


def add_warning_notice(session: Session, ticket: Ticket, clock: SlaClock) -> None:
    """Queue one supervisor message for a clock close to its due instant, keyed per clock."""
    body = warning_notice_body(ticket, clock)
    outbox.add_message(session, channel="supervisor", recipient=outbox.SUPERVISOR, body=body,
                       idempotency_key=f"sla-warning:{clock.id}", ticket_id=ticket.id)


def _components(
    policies: PolicySet | None, calendars: dict[str, BusinessCalendar] | None
) -> tuple[PolicySet, dict[str, BusinessCalendar]]:
    if policies is not None and calendars is not None:
        return policies, calendars
    from hotline.runtime import current

    runtime = current()
    return (policies or runtime.component("sla_policies"),
            calendars if calendars is not None else runtime.component("calendars"))


def _ticket_clocks(session: Session, ticket: Ticket) -> list[SlaClock]:
    return list(session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)))


def _ticket_facts(ticket: Ticket, facts: Mapping[str, Any]) -> dict[str, Any]:
    return {**facts, "priority": float(ticket.priority), "category": ticket.category}


def _ensure_ticket_id(session: Session, ticket: Ticket) -> None:
    if ticket.id is None:
        session.add(ticket)
        session.flush()
