"""SLA targets on SQLite and PostgreSQL: owners, warnings, pauses, recomputation, the sweep and the API.

Instants are pinned at +08:00 on the workday calendar (08:30-17:00 Mon-Fri, China's holidays).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlmodel import Session, select

from hotline import tickets
from hotline.cli.language import gettext
from hotline.dispatch import offers
from hotline.models import Offer, OutboxMessage, SlaClock, Ticket, TicketEvent
from hotline.queueing import InProcessQueue
from hotline.runtime import build_runtime
from hotline.sla import clocks, sweep
from hotline.sla.explain import explain_ticket
from hotline.sla.policies import load_policies

TEST_POLICIES = """
version: "test"
warn_before: 2h
policies:
  - id: timed
    condition: "true"
    calendar: workday
    targets:
      P1: {first_response: 30m, resolution: 30m}
      P2: {resolution: 2h}
      P3: {resolution: 8h}
      P4: {resolution: 4h}
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def policies(runtime, tmp_path):
    path = tmp_path / "sla.yaml"
    path.write_text(TEST_POLICIES, encoding="utf-8")
    return load_policies(path, runtime.component("calendars"))


def new_ticket(runtime, policies, priority: int, started: datetime, number: str = "QP-20260309-0001") -> int:
    with time_machine.travel(started, tick=False), runtime.transaction() as session:
        ticket = Ticket(number=number, channel="phone", source="resident", category="consultation",
                        priority=priority, created_at=started, updated_at=started)
        session.add(ticket)
        session.flush()
        clocks.start_clocks(session, ticket, {}, policies, runtime.component("calendars"), started)
        return ticket.id


def clock_of(runtime, ticket_id: int, target: str) -> SlaClock:
    with Session(runtime.engine) as session:
        return session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket_id, SlaClock.target == target)).one()


def rows(runtime, model, *conditions):
    with Session(runtime.engine) as session:
        return session.exec(select(model).where(*conditions)).all()


def test_resolved_straight_from_waiting_counts_no_paused_time(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 3, at("2026-03-09T09:00:00+08:00"))
    calendars = runtime.component("calendars")

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        clocks.pause_clocks(session, ticket, at("2026-03-09T10:00:00+08:00"), "op1", policies=policies)
    resolved = at("2026-03-11T15:00:00+08:00")
    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        clocks.resume_clocks(session, ticket, calendars, resolved, "op1", policies=policies)
        clocks.mark_met(session, ticket, ["resolution"], resolved, "op1", policies=policies, calendars=calendars)

    clock = clock_of(runtime, ticket_id, "resolution")
    assert clock.state == "met"
    assert clock.breached_at is None
    assert clock.paused_seconds == 22 * 3600
    assert clocks.working_seconds(clock, calendars["workday"], resolved) == 3600


def test_warning_lead_in_working_time(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 4, at("2026-03-09T14:30:00+08:00"))

    clock = clock_of(runtime, ticket_id, "resolution")
    assert clock.due_at == at("2026-03-10T10:00:00+08:00")
    assert clock.warn_at == at("2026-03-09T16:30:00+08:00")
    assert clock.next_check_at == clock.warn_at
    assert clocks.clock_view(clock)["warn_at"] == "2026-03-09T16:30:00+08:00"
    assert clocks.clock_view(clock)["owner"] == "hotline"


def test_warning_sent_once_across_sweeps_and_runtimes(runtime, policies, settings):
    ticket_id = new_ticket(runtime, policies, 4, at("2026-03-09T14:30:00+08:00"))
    other = build_runtime(settings, queue=InProcessQueue())

    try:
        before = sweep.sweep(runtime, now=at("2026-03-09T16:29:59+08:00"))
        first = sweep.sweep(runtime, now=at("2026-03-09T16:30:00+08:00"))
        second = sweep.sweep(other, now=at("2026-03-09T16:45:00+08:00"))
        third = sweep.sweep(runtime, now=at("2026-03-10T09:00:00+08:00"))
    finally:
        other.engine.dispose()

    assert (before.warned, first.warned, second.warned, third.warned) == (0, 1, 0, 0)
    assert len(rows(runtime, TicketEvent, TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "sla_warning")) == 1
    notices = rows(runtime, OutboxMessage, OutboxMessage.idempotency_key.startswith("sla-warning:"))
    assert len(notices) == 1
    assert "即将超时" in notices[0].body
    clock = clock_of(runtime, ticket_id, "resolution")
    assert clock.warned_at == at("2026-03-09T16:30:00+08:00")
    assert clock.next_check_at == clock.due_at


def test_breach_stamped_with_due_instant_once(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 4, at("2026-03-09T14:30:00+08:00"))

    results = [sweep.sweep(runtime, now=at("2026-03-10T11:00:00+08:00")) for _ in range(3)]

    assert [result.breached for result in results] == [1, 0, 0]
    assert results[0].warned == 0
    assert clock_of(runtime, ticket_id, "resolution").breached_at == at("2026-03-10T10:00:00+08:00")
    assert len(rows(runtime, OutboxMessage, OutboxMessage.idempotency_key.startswith("sla-breach:"))) == 1


def test_priority_change_clears_overdue_at_once(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 2, at("2026-03-09T09:00:00+08:00"))
    assert sweep.sweep_breaches(runtime, now=at("2026-03-09T11:30:00+08:00")) == 1

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        ticket.priority = 3
        clocks.recompute_clocks(session, ticket, {}, policies, runtime.component("calendars"),
                                at("2026-03-09T11:40:00+08:00"), "supervisor1", "priority lowered")

    clock = clock_of(runtime, ticket_id, "resolution")
    assert clock.due_at == at("2026-03-09T17:00:00+08:00")
    assert clock.breached_at is None
    assert clock.warn_at == at("2026-03-09T15:00:00+08:00")


def test_hourly_check_flags_after_due(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 3, at("2026-03-13T15:00:00+08:00"))
    start = at("2026-03-13T16:00:00+08:00")

    flagged = []
    for hour in range(72):
        instant = start + timedelta(hours=hour)
        if sweep.sweep_breaches(runtime, now=instant):
            flagged.append(instant)

    assert clock_of(runtime, ticket_id, "resolution").due_at == at("2026-03-16T14:30:00+08:00")
    assert flagged == [at("2026-03-16T15:00:00+08:00")]


def test_unknown_year_alerts_once(runtime, settings):
    with runtime.transaction() as session:
        ticket = tickets.create_ticket(session, runtime, at("2026-12-31T16:00:00+08:00"), actor="test",
                                       channel="phone", source="resident", category="consultation")
        ticket_id = ticket.id
    other = build_runtime(settings, queue=InProcessQueue())
    try:
        for runner in (runtime, runtime, other):
            sweep.sweep(runner, now=at("2026-12-31T16:05:00+08:00"))
    finally:
        other.engine.dispose()

    resolution = clock_of(runtime, ticket_id, "resolution")
    assert resolution.provisional is True
    assert clocks.clock_view(resolution)["provisional"] is True
    alerts = rows(runtime, OutboxMessage, OutboxMessage.idempotency_key.startswith("sla-calendar-year:"))
    assert [alert.idempotency_key for alert in alerts] == ["sla-calendar-year:2027"]
    assert "calendars.yaml" in alerts[0].body


def test_unknown_year_deadline(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 4, at("2026-12-31T16:00:00+08:00"))

    clock = clock_of(runtime, ticket_id, "resolution")
    assert clock.due_at == at("2027-01-04T11:30:00+08:00")
    assert clock.provisional is True


def test_added_year_makes_deadlines_final(runtime, settings, tmp_path):
    with runtime.transaction() as session:
        ticket = tickets.create_ticket(session, runtime, at("2026-12-31T16:00:00+08:00"), actor="test",
                                       channel="phone", source="resident", category="consultation")
        ticket_id = ticket.id
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in settings.rules_dir.glob("*.yaml"):
        (rules / path.name).write_bytes(path.read_bytes())
    calendars_file = rules / "calendars.yaml"
    calendars_file.write_text(calendars_file.read_text(encoding="utf-8").replace(
        "    years: {}", "    years:\n      2027:\n        holidays: [2027-01-01, 2027-01-04]\n"
        "        makeup_workdays: []"), encoding="utf-8")
    restarted = build_runtime(replace(settings, rules_dir=rules), queue=InProcessQueue())
    try:
        sweep.sweep(restarted, now=at("2026-12-31T16:10:00+08:00"))
    finally:
        restarted.engine.dispose()

    resolution = clock_of(runtime, ticket_id, "resolution")
    assert resolution.provisional is False
    assert resolution.due_at == at("2027-01-05T16:00:00+08:00")


def orphan_clock(runtime, clock_id: int) -> None:
    """Point a clock at a ticket that does not exist, with the foreign-key checks off for this one change."""
    raw = runtime.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if runtime.engine.dialect.name == "sqlite":
            raw.commit()
            cursor.execute("PRAGMA foreign_keys=OFF")
        else:
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(f"UPDATE slaclock SET ticket_id = 999999 WHERE id = {int(clock_id)}")
        raw.commit()
        cursor.execute("PRAGMA foreign_keys=ON" if runtime.engine.dialect.name == "sqlite"
                       else "SET session_replication_role = DEFAULT")
    finally:
        raw.close()


def test_one_bad_row_is_pushed_back(runtime, policies):
    good = new_ticket(runtime, policies, 4, at("2026-03-09T14:30:00+08:00"))
    bad = new_ticket(runtime, policies, 4, at("2026-03-09T14:30:00+08:00"), number="QP-20260309-0002")
    bad_clock = clock_of(runtime, bad, "resolution")
    orphan_clock(runtime, bad_clock.id)
    now = at("2026-03-10T11:00:00+08:00")

    result = sweep.sweep(runtime, now=now)

    assert (result.breached, result.failed) == (1, 1)
    assert clock_of(runtime, good, "resolution").breached_at is not None
    with Session(runtime.engine) as session:
        broken = session.get(SlaClock, bad_clock.id)
        assert broken.breached_at is None
        assert broken.next_check_at == now + sweep.RETRY_DELAY
    assert sweep.sweep(runtime, now=now + timedelta(minutes=1)).failed == 0


@time_machine.travel(at("2026-12-07T09:00:00+08:00"), tick=False)
def test_dispatch_and_on_site_clocks_belong_to_agency(runtime, seeded):
    monday = at("2026-12-07T09:00:00+08:00")
    with runtime.transaction() as session:
        ticket = tickets.create_ticket(session, runtime, monday, actor="test", channel="referral_api",
                                       source="community_worker", category="agency_service",
                                       needs=["body_transport"], town_code="310118103", caller_phone="+8613812345678")
        ticket_id = ticket.id
    first_due = clock_of(runtime, ticket_id, "first_response").due_at
    resolution_due = clock_of(runtime, ticket_id, "resolution").due_at
    dispatch = clock_of(runtime, ticket_id, "dispatch_accept")
    assert (dispatch.owner, dispatch.calendar, dispatch.due_at) == ("agency", "24x7", monday + timedelta(minutes=30))

    with Session(runtime.engine) as session:
        offer = session.exec(select(Offer).where(Offer.ticket_id == ticket_id)).one()
    accepted = monday + timedelta(minutes=10)
    assert offers.answer_offer(runtime, offer.id, True, "agency:1", None, accepted).ok

    dispatch = clock_of(runtime, ticket_id, "dispatch_accept")
    on_site = clock_of(runtime, ticket_id, "on_site")
    assert (dispatch.state, dispatch.met_at) == ("met", accepted)
    assert (on_site.owner, on_site.due_at) == ("agency", accepted + timedelta(hours=4))
    assert clock_of(runtime, ticket_id, "first_response").due_at == first_due
    assert clock_of(runtime, ticket_id, "resolution").due_at == resolution_due


def test_claim_never_moves_due(runtime, seeded):
    started = at("2026-03-09T09:00:00+08:00")
    with runtime.transaction() as session:
        ticket = tickets.create_ticket(session, runtime, started, actor="test", channel="phone", source="resident",
                                       category="consultation")
        ticket_id = ticket.id
    before = {clock.target: clock.due_at for clock in rows(runtime, SlaClock, SlaClock.ticket_id == ticket_id)}

    with runtime.transaction() as session:
        assert tickets.claim(session, runtime, session.get(Ticket, ticket_id), 1, "op1", started + timedelta(hours=1))

    after = {clock.target: clock.due_at for clock in rows(runtime, SlaClock, SlaClock.ticket_id == ticket_id)}
    assert after == before


def test_follow_up_resolution_to_close(runtime):
    started = at("2026-03-09T09:00:00+08:00")
    with runtime.transaction() as session:
        ticket = tickets.create_ticket(session, runtime, started, actor="test", channel="phone", source="resident",
                                       category="complaint")
        ticket_id = ticket.id
    resolved = at("2026-03-10T10:00:00+08:00")
    with runtime.transaction() as session:
        tickets.transition(session, runtime, session.get(Ticket, ticket_id), "resolved", "op1", None, resolved)

    follow_up = clock_of(runtime, ticket_id, "follow_up")
    assert (follow_up.state, follow_up.started_at) == ("running", resolved)
    assert follow_up.due_at == at("2026-03-13T10:00:00+08:00")

    closed = at("2026-03-11T10:00:00+08:00")
    with runtime.transaction() as session:
        tickets.transition(session, runtime, session.get(Ticket, ticket_id), "closed", "op1", None, closed)
    follow_up = clock_of(runtime, ticket_id, "follow_up")
    assert (follow_up.state, follow_up.met_at, follow_up.breached_at) == ("met", closed, None)


def test_reopened_ticket_gets_new_resolution_clock(runtime):
    started = at("2026-03-09T09:00:00+08:00")
    with runtime.transaction() as session:
        ticket = tickets.create_ticket(session, runtime, started, actor="test", channel="phone", source="resident",
                                       category="complaint")
        ticket_id = ticket.id
    with runtime.transaction() as session:
        tickets.transition(session, runtime, session.get(Ticket, ticket_id), "resolved", "op1", None,
                           at("2026-03-10T10:00:00+08:00"))
    first_due = clock_of(runtime, ticket_id, "resolution").due_at

    reopened = at("2026-03-11T10:00:00+08:00")
    with runtime.transaction() as session:
        tickets.transition(session, runtime, session.get(Ticket, ticket_id), "in_progress", "op1", "家属再次来电",
                           reopened)

    resolution = clock_of(runtime, ticket_id, "resolution")
    assert (resolution.state, resolution.started_at, resolution.met_at) == ("running", reopened, None)
    assert resolution.due_at > first_due
    assert clock_of(runtime, ticket_id, "follow_up").state == "cancelled"
    with Session(runtime.engine) as session:
        ticket = session.get(Ticket, ticket_id)
    assert ticket.due_at == resolution.due_at
    assert ticket.resolved_at is None
    met_events = rows(runtime, TicketEvent, TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "sla_met")
    assert any((event.data or {}).get("target") == "resolution" for event in met_events), "the first resolution stays"


def test_urgent_due_at_shown_in_beijing_time(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 1, at("2026-03-09T10:00:00+08:00"))

    with time_machine.travel(at("2026-03-09T02:05:00+00:00"), tick=False):
        view = clocks.clock_view(clock_of(runtime, ticket_id, "first_response"))

    assert view["due_at"] == "2026-03-09T10:30:00+08:00"


def test_at_risk_lists_warned_clocks_soonest_first(client, runtime, seeded):
    created = {}
    for name, category, started in (("complaint", "complaint", "2026-03-09T09:00:00+08:00"),
                                    ("consultation", "consultation", "2026-03-09T10:00:00+08:00")):
        with runtime.transaction() as session:
            created[name] = tickets.create_ticket(session, runtime, at(started), actor="test", channel="phone",
                                                  source="resident", category=category)
    sweep.sweep(runtime, now=at("2026-03-09T16:45:00+08:00"))
    # complaint: first response due Tue 09:00, warned at 15:30; consultation: first response overdue since
    # 14:00, resolution due Tue 10:00, warned at 16:30.
    assert clock_of(runtime, created["complaint"].id, "first_response").due_at == at("2026-03-10T09:00:00+08:00")
    assert clock_of(runtime, created["consultation"].id, "resolution").due_at == at("2026-03-10T10:00:00+08:00")

    headers = {"Authorization": f"Bearer {seeded['operator']}"}
    body = client.get("/api/v1/sla/at-risk?limit=1", headers=headers).get_json()
    assert [item["number"] for item in body["items"]] == [created["complaint"].number]
    assert body["next"] is not None
    second = client.get(body["next"], headers=headers).get_json()
    assert [item["number"] for item in second["items"]] == [created["consultation"].number]
    assert second["next"] is None


def test_explain_shows_arithmetic(runtime, policies):
    ticket_id = new_ticket(runtime, policies, 3, at("2026-03-09T09:00:00+08:00"))
    with runtime.transaction() as session:
        clocks.pause_clocks(session, session.get(Ticket, ticket_id), at("2026-03-09T10:00:00+08:00"), "op1",
                            policies=policies)
    with runtime.transaction() as session:
        clocks.resume_clocks(session, session.get(Ticket, ticket_id), runtime.component("calendars"),
                             at("2026-03-10T10:00:00+08:00"), "op1", policies=policies)

    with Session(runtime.engine) as session:
        text = "\n".join(explain_ticket(session, session.get(Ticket, ticket_id), policies,
                                        runtime.component("calendars"), at("2026-03-10T11:00:00+08:00"), gettext))

    assert "策略 timed" in text
    assert "日历 workday（08:30-17:00，按国家法定节假日和调休）" in text
    assert "时长 08:00:00 + 暂停 08:30:00" in text
    assert "= 2026-03-10T17:00:00+08:00" in text
    assert "暂停 2026-03-09T10:00:00+08:00 至 2026-03-10T10:00:00+08:00，计入 08:30:00 工作时间" in text
    assert "已计工作时间 02:00:00" in text
