"""SLA policies and clocks on SQLite and PostgreSQL: start, met, pause, recompute and the breach sweep."""

from __future__ import annotations

from datetime import datetime

import pytest
import time_machine
from sqlmodel import Session, select

from hotline.models import OutboxMessage, SlaClock, Ticket, TicketEvent
from hotline.queueing import InProcessQueue
from hotline.rules.expressions import TICKET_FACTS, RuleError
from hotline.runtime import Runtime, build_runtime
from hotline.sla.clocks import (
    clock_view,
    mark_met,
    pause_clocks,
    recompute_clocks,
    resume_clocks,
    start_clocks,
)
from hotline.sla.policies import load_policies
from hotline.sla.sweep import sweep_breaches
from hotline.vocabulary import CATEGORIES

FRIDAY_4PM = datetime.fromisoformat("2026-03-06T16:00:00+08:00")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def facts_for(ticket: Ticket) -> dict:
    facts = {name: "" for name in TICKET_FACTS}
    facts.update(needs=[], flags=[], tags=[], is_referral=False, pilot_town=False, working_time=True, holiday=False,
                 open_tickets_of_caller=0.0, calls_last_30_days=0.0, category=ticket.category,
                 channel=ticket.channel, source=ticket.source, priority=float(ticket.priority))
    return facts


def create_ticket(runtime: Runtime, number: str, category: str, priority: int, started: datetime) -> int:
    """Insert a ticket and start its clocks at `started`; return its id."""
    with time_machine.travel(started, tick=False), runtime.transaction() as session:
        ticket = Ticket(number=number, channel="phone", source="resident", category=category, priority=priority)
        session.add(ticket)
        session.flush()
        start_clocks(session, ticket, facts_for(ticket), runtime.component("sla_policies"),
                     runtime.component("calendars"), started)
        return ticket.id


def clocks_by_target(session: Session, ticket_id: int) -> dict[str, SlaClock]:
    rows = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket_id))
    return {clock.target: clock for clock in rows}


def events_of(session: Session, ticket_id: int, kind: str) -> list[TicketEvent]:
    query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == kind)
    return list(session.exec(query.order_by(TicketEvent.id)))


def test_policy_choice_compiled_matches_rule_engine(runtime):
    policies = runtime.component("sla_policies")
    base = facts_for(Ticket(number="x", channel="phone", source="resident", category="complaint", priority=1))
    cases = [
        {**base, "category": category, "priority": float(priority), "source": source, "working_time": working}
        for category in CATEGORIES for priority in (1, 2, 3, 4)
        for source in ("resident", "shequyun") for working in (True, False)
    ]

    for facts in cases:
        by_rule_engine = next(policy for policy in policies.policies
                              if f"P{int(facts['priority'])}" in policy.targets and policy.condition.matches(facts))
        assert policies.choose(facts).id == by_rule_engine.id, facts


def test_policy_choice_follows_file_order(runtime):
    policies = runtime.component("sla_policies")
    base = facts_for(Ticket(number="x", channel="phone", source="resident", category="complaint", priority=1))

    assert policies.choose(base).id == "p1-around-the-clock"
    assert policies.choose({**base, "priority": 3.0}).id == "complaint"
    assert policies.choose({**base, "priority": 3.0, "category": "eco_burial"}).id == "enquiry"
    assert policies.choose({**base, "priority": 4.0, "category": "assisted_application"}).id == "case-work"


def test_shipped_policy_durations(runtime):
    policies = {policy.id: policy for policy in runtime.component("sla_policies").policies}
    working_day = 8 * 3600 + 1800

    assert policies["p1-around-the-clock"].targets["P1"]["first_response"].duration_seconds == 900
    assert policies["p1-around-the-clock"].targets["P1"]["resolution"].calendar == "24x7"
    assert policies["complaint"].targets["P3"]["resolution"].duration_seconds == 5 * working_day
    assert policies["enquiry"].targets["P2"]["first_response"].duration_seconds == 2 * 3600
    assert policies["enquiry"].targets["P4"]["resolution"].duration_seconds == working_day
    assert policies["case-work"].targets["P3"]["resolution"].duration_seconds == 5 * working_day


@pytest.mark.parametrize("body, problem", [
    ("version: '1'\npolicies:\n  - {id: a, condition: 'true', calendar: moon, targets: {P1: {resolution: 4h}}}",
     "calendar 'moon' is not defined"),
    ("version: '1'\npolicies:\n  - {id: a, condition: 'category == \"complaint\"', calendar: workday,"
     " targets: {P1: {resolution: 4h}, P2: {resolution: 4h}, P3: {resolution: 4h}, P4: {resolution: 4h}}}",
     "must have condition: true"),
    ("version: '1'\npolicies:\n  - {id: a, condition: 'true', calendar: workday, targets: {P1: {resolution: 4h}}}",
     "missing P2, P3, P4"),
    ("version: '1'\npolicies:\n  - {id: a, condition: 'colour == 1', calendar: workday,"
     " targets: {P1: {resolution: 4h}}}",
     "unknown name 'colour'"),
    ("version: '1'\npolicies:\n  - {id: a, condition: 'true', calendar: workday, targets: {P1: {reply: 4h}}}",
     "target 'reply' is invalid"),
    ("version: '1'\npolicies:\n  - {id: a, condition: 'true', calendar: workday, targets: {P1: {resolution: 4 hours}}}",
     "'4 hours' is invalid"),
    ("version: '1'\npolicies:\n  - {id: a, condition: 'true', calendar: workday,"
     " targets: {P1: {resolution: 2 working days}}}", "needs 'working_day'"),
])
def test_invalid_policy_file_names_policy(tmp_path, runtime, body, problem):
    path = tmp_path / "sla.yaml"
    path.write_text(body, encoding="utf-8")

    with pytest.raises(RuleError) as raised:
        load_policies(path, runtime.component("calendars"))

    assert "sla.yaml" in str(raised.value)
    assert "policy 'a'" in str(raised.value)
    assert problem in str(raised.value)


def test_start_sets_clocks_and_ticket_due(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0001", "consultation", 3, FRIDAY_4PM)

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)
        ticket = session.get(Ticket, ticket_id)

        assert set(clocks) == {"first_response", "resolution"}
        assert clocks["first_response"].due_at == at("2026-03-09T11:30:00+08:00")
        assert clocks["resolution"].due_at == at("2026-03-09T16:00:00+08:00")
        assert clocks["first_response"].policy == "enquiry"
        assert ticket.due_at == at("2026-03-09T11:30:00+08:00")
        assert len(events_of(session, ticket_id, "sla_started")) == 2
        assert clock_view(clocks["first_response"]) == {
            "target": "first_response", "owner": "hotline", "policy": "enquiry", "calendar": "workday",
            "due_at": "2026-03-09T11:30:00+08:00", "warn_at": "2026-03-09T09:30:00+08:00", "state": "running",
            "breached_at": None,
            "paused_seconds": 0, "provisional": False, "started_at": "2026-03-06T16:00:00+08:00",
        }


def test_start_twice_adds_no_clock(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0002", "consultation", 3, FRIDAY_4PM)

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        started = start_clocks(session, ticket, facts_for(ticket), runtime.component("sla_policies"),
                               runtime.component("calendars"), at("2026-03-06T16:30:00+08:00"))

    assert started == []
    with Session(runtime.engine) as session:
        assert len(clocks_by_target(session, ticket_id)) == 2


def test_p1_complaint_runs_around_the_clock(runtime):
    ticket_id = create_ticket(runtime, "QP-20260307-0001", "complaint", 1, at("2026-03-07T23:50:00+08:00"))

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)

        assert clocks["first_response"].due_at == at("2026-03-08T00:05:00+08:00")
        assert clocks["resolution"].due_at == at("2026-03-08T03:50:00+08:00")
        assert clocks["resolution"].calendar == "24x7"


def test_mark_met_stops_clock(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0003", "consultation", 3, FRIDAY_4PM)

    with runtime.transaction() as session:
        mark_met(session, session.get(Ticket, ticket_id), ["first_response"], at("2026-03-06T16:10:00+08:00"), "op1")

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)
        ticket = session.get(Ticket, ticket_id)

        assert clocks["first_response"].state == "met"
        assert clocks["first_response"].met_at == at("2026-03-06T16:10:00+08:00")
        assert clocks["first_response"].breached_at is None
        assert clocks["resolution"].state == "running"
        assert ticket.due_at == clocks["resolution"].due_at
        assert events_of(session, ticket_id, "sla_met")[0].actor == "op1"


def test_mark_met_late_shows_breached(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0004", "consultation", 3, FRIDAY_4PM)

    with runtime.transaction() as session:
        mark_met(session, session.get(Ticket, ticket_id), ["first_response", "resolution"],
                 at("2026-03-09T12:00:00+08:00"), "op1")

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)

        assert clocks["first_response"].breached_at == at("2026-03-09T11:30:00+08:00")
        assert clock_view(clocks["first_response"])["state"] == "breached"
        assert clock_view(clocks["resolution"])["state"] == "met"
        assert session.get(Ticket, ticket_id).due_at is None


def test_pause_and_resume_move_deadline(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0005", "consultation", 3, FRIDAY_4PM)
    calendars = runtime.component("calendars")

    with runtime.transaction() as session:
        pause_clocks(session, session.get(Ticket, ticket_id), at("2026-03-06T16:30:00+08:00"), "op1")
    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)
        assert clock_view(clocks["first_response"])["state"] == "paused"
        assert session.get(Ticket, ticket_id).due_at is None

    with runtime.transaction() as session:
        resume_clocks(session, session.get(Ticket, ticket_id), calendars, at("2026-03-09T09:00:00+08:00"), "op1")

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)
        first = clocks["first_response"]

        assert first.state == "running"
        assert first.paused_seconds == 3600
        assert first.paused_at is None
        assert first.due_at == at("2026-03-09T12:30:00+08:00")
        assert clocks["resolution"].due_at == at("2026-03-09T17:00:00+08:00")
        assert session.get(Ticket, ticket_id).due_at == at("2026-03-09T12:30:00+08:00")
        assert len(events_of(session, ticket_id, "sla_resumed")) == 2


def test_pause_keeps_overdue_clock_running(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0006", "consultation", 3, FRIDAY_4PM)

    with runtime.transaction() as session:
        pause_clocks(session, session.get(Ticket, ticket_id), at("2026-03-09T12:00:00+08:00"), "op1")

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)

        assert clocks["first_response"].state == "running"
        assert clocks["resolution"].state == "paused"


def test_recompute_priority_sets_then_clears_breach(runtime):
    started = at("2026-03-09T09:00:00+08:00")
    ticket_id = create_ticket(runtime, "QP-20260309-0001", "consultation", 4, started)
    policies = runtime.component("sla_policies")
    calendars = runtime.component("calendars")

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        ticket.priority = 2
        recompute_clocks(session, ticket, facts_for(ticket), policies, calendars,
                         at("2026-03-09T12:00:00+08:00"), "supervisor1", "raised after call-back")

    with Session(runtime.engine) as session:
        first = clocks_by_target(session, ticket_id)["first_response"]
        assert first.due_at == at("2026-03-09T11:00:00+08:00")
        assert first.breached_at == at("2026-03-09T11:00:00+08:00")
        assert len(events_of(session, ticket_id, "sla_recomputed")) == 1
        assert len(session.exec(select(OutboxMessage).where(OutboxMessage.ticket_id == ticket_id)).all()) == 1

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        ticket.priority = 4
        recompute_clocks(session, ticket, facts_for(ticket), policies, calendars,
                         at("2026-03-09T12:30:00+08:00"), "supervisor1", "lowered again")

    with Session(runtime.engine) as session:
        first = clocks_by_target(session, ticket_id)["first_response"]
        events = events_of(session, ticket_id, "sla_recomputed")

        assert first.due_at == at("2026-03-10T09:00:00+08:00")
        assert first.breached_at is None
        assert len(events) == 2
        assert events[1].reason == "lowered again"
        assert events[1].data["target"] == "first_response"
        assert session.get(Ticket, ticket_id).due_at == at("2026-03-10T09:00:00+08:00")


def test_recompute_category_switches_policy(runtime):
    ticket_id = create_ticket(runtime, "QP-20260309-0002", "consultation", 3, at("2026-03-09T09:00:00+08:00"))

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        ticket.category = "complaint"
        recompute_clocks(session, ticket, facts_for(ticket), runtime.component("sla_policies"),
                         runtime.component("calendars"), at("2026-03-09T10:00:00+08:00"), "op1", "recategorised")

    with Session(runtime.engine) as session:
        clocks = clocks_by_target(session, ticket_id)

        assert clocks["first_response"].policy == "complaint"
        assert clocks["first_response"].due_at == at("2026-03-10T09:00:00+08:00")
        assert clocks["resolution"].due_at == at("2026-03-16T09:00:00+08:00")
        assert len(events_of(session, ticket_id, "sla_recomputed")) == 2


def test_sweep_twice_flags_once(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0007", "consultation", 3, FRIDAY_4PM)
    due = at("2026-03-09T11:30:00+08:00")

    assert sweep_breaches(runtime, now=at("2026-03-09T11:29:59+08:00")) == 0
    assert sweep_breaches(runtime, now=due) == 1
    assert sweep_breaches(runtime, now=at("2026-03-09T12:00:00+08:00")) == 0

    with Session(runtime.engine) as session:
        first = clocks_by_target(session, ticket_id)["first_response"]
        events = events_of(session, ticket_id, "sla_breached")
        messages = session.exec(select(OutboxMessage).where(OutboxMessage.ticket_id == ticket_id)
                                .where(OutboxMessage.idempotency_key.startswith("sla-breach:"))).all()

        assert first.breached_at == due
        assert clock_view(first)["state"] == "breached"
        assert len(events) == 1
        assert events[0].data == {"target": "first_response", "due_at": "2026-03-09T11:30:00+08:00"}
        assert len(messages) == 1
        assert messages[0].idempotency_key == f"sla-breach:20260309T033000.000000Z:{first.id}"
        assert messages[0].channel == "supervisor"
        assert "QP-20260306-0007" in messages[0].body
        assert "首次响应" in messages[0].body
        assert "2026-03-09 11:30" in messages[0].body


def test_second_runtime_sweep_finds_nothing(runtime, settings):
    create_ticket(runtime, "QP-20260306-0008", "consultation", 3, FRIDAY_4PM)
    other = build_runtime(settings, queue=InProcessQueue())
    late = at("2026-03-10T09:00:00+08:00")

    try:
        first = sweep_breaches(runtime, now=late)
        second = sweep_breaches(other, now=late)
    finally:
        other.engine.dispose()

    assert first == 2
    assert second == 0
    with Session(runtime.engine) as session:
        assert len(session.exec(select(TicketEvent).where(TicketEvent.kind == "sla_breached")).all()) == 2
        messages = session.exec(select(OutboxMessage)).all()
        assert len(messages) == 1
        assert "2 项时限已超时，涉及 1 张工单" in messages[0].body
        assert messages[0].body.count("QP-20260306-0008") == 2


def test_sweep_uses_clock_now_and_limit(runtime):
    for index in range(3):
        create_ticket(runtime, f"QP-20260306-001{index}", "consultation", 3, FRIDAY_4PM)

    with time_machine.travel(at("2026-03-09T11:30:00+08:00"), tick=False):
        assert sweep_breaches(runtime, limit=2) == 2
        assert sweep_breaches(runtime, limit=2) == 1
        assert sweep_breaches(runtime, limit=2) == 0


def test_sweep_skips_met_and_paused_clocks(runtime):
    ticket_id = create_ticket(runtime, "QP-20260306-0009", "consultation", 3, FRIDAY_4PM)
    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        mark_met(session, ticket, ["first_response"], at("2026-03-06T16:05:00+08:00"), "op1")
        pause_clocks(session, ticket, at("2026-03-06T16:10:00+08:00"), "op1")

    assert sweep_breaches(runtime, now=at("2026-03-20T09:00:00+08:00")) == 0

