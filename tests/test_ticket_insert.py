"""The rows a new referral writes: the same on SQLite (through the ORM) and PostgreSQL (in one statement)."""

from __future__ import annotations

from datetime import datetime

import time_machine
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
from sqlmodel import select

from hotline import intake
from hotline.models import ChecklistItem, Referral, RuleSetVersion, SlaClock, Ticket, TicketCounter, TicketEvent
from hotline.ticket_insert import _statement

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


def _refer(client, token, external_id, category="consultation", needs=(), **extra):
    body = {"external_id": external_id, "category": category, "needs": list(needs),
            "resident": {"phone": "13812345678", "town": "练塘镇"}, **extra}
    with time_machine.travel(MONDAY_MORNING, tick=False):
        return client.post("/api/v1/referrals", json=body, headers={"Authorization": f"Bearer {token}"})


def _rows(runtime, number):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        events = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                              .order_by(TicketEvent.id)).all()
        clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)).all()
        items = session.exec(select(ChecklistItem).where(ChecklistItem.ticket_id == ticket.id)
                             .order_by(ChecklistItem.id)).all()
        referral = session.exec(select(Referral).where(Referral.ticket_id == ticket.id)).one()
        return ticket, events, clocks, items, referral


def test_referral_writes_ticket_and_rows(client, seeded, runtime):
    response = _refer(client, seeded["shequyun"], "SG-1", note="询问骨灰寄存", flags=["solitary_elderly"])

    assert response.status_code == 201
    ticket, events, clocks, items, referral = _rows(runtime, response.get_json()["number"])
    assert ticket.number == "QP-20261207-0001"
    assert ticket.note == "询问骨灰寄存"
    assert ticket.flags == ["solitary_elderly"]
    assert ticket.created_at == MONDAY_MORNING
    assert ticket.rule_trace
    assert [event.kind for event in events] == ["created", "sla_started", "sla_started"]
    assert [clock.target for clock in clocks] == ["first_response", "resolution"]
    assert all(clock.next_check_at is not None for clock in clocks)
    assert ticket.due_at == min(clock.due_at for clock in clocks)
    assert items == []
    assert referral.external_id == "SG-1"
    assert referral.payload["note"] == "询问骨灰寄存"


def test_response_matches_stored_ticket(client, seeded, runtime):
    created = _refer(client, seeded["shequyun"], "SG-1").get_json()

    stored = client.get(f"/api/v1/tickets/{created['number']}",
                        headers={"Authorization": f"Bearer {seeded['supervisor']}"}).get_json()

    for field in ("number", "priority", "queue_rank", "due_at", "created_at", "rule_trace", "sla", "events",
                  "priority_reasons", "tags"):
        assert created[field] == stored[field], field


def test_assisted_application_gets_checklist(client, seeded, runtime):
    response = _refer(client, seeded["elderly_advisor"], "EA-1", category="assisted_application")

    ticket, events, _clocks, items, _referral = _rows(runtime, response.get_json()["number"])
    assert [event.kind for event in events][-1] == "checklist_created"
    assert len(items) == int(events[-1].to_value)
    assert [item.position for item in items] == list(range(1, len(items) + 1))
    assert all(item.status == "todo" for item in items)


def test_rule_set_version_stored(client, seeded, runtime):
    response = _refer(client, seeded["shequyun"], "SG-1")

    version = response.get_json()["rule_set_version"]
    with runtime.transaction() as session:
        stored = session.exec(select(RuleSetVersion.version)).all()
    assert stored == [version]


def test_referral_number_past_9999(client, seeded, runtime):
    with runtime.transaction() as session:
        session.add(TicketCounter(day="20261207", last=9999))

    response = _refer(client, seeded["shequyun"], "SG-1")

    assert response.get_json()["number"] == "QP-20261207-10000"


def test_rejected_duplicate_leaves_counter(client, seeded, runtime):
    first = _refer(client, seeded["shequyun"], "SG-1")
    again = _refer(client, seeded["shequyun"], "SG-1")
    other = _refer(client, seeded["shequyun"], "SG-2")

    assert again.status_code == 200
    assert again.get_json()["number"] == first.get_json()["number"]
    assert other.get_json()["number"] == "QP-20261207-0002"


def test_duplicate_missed_by_lookup_retried(client, seeded, runtime, monkeypatch):
    first = _refer(client, seeded["shequyun"], "SG-1")
    look_up = intake._earlier_referral_and_history
    calls = []

    def miss_once(session, source, external_id, phone, now):
        # As when a concurrent duplicate commits between the lookup and the insert.
        found, history = look_up(session, source, external_id, phone, now)
        calls.append(found)
        return (None, history) if len(calls) == 1 else (found, history)

    monkeypatch.setattr(intake, "_earlier_referral_and_history", miss_once)
    again = _refer(client, seeded["shequyun"], "SG-1")

    assert again.status_code == 200
    assert again.get_json()["number"] == first.get_json()["number"]
    assert len(calls) == 2
    with runtime.transaction() as session:
        assert len(session.exec(select(Ticket)).all()) == 1


def test_agency_service_referral_dispatched(client, seeded, runtime):
    response = _refer(client, seeded["community_worker"], "CW-1", category="agency_service",
                      needs=["body_transport"])

    body = response.get_json()
    stored = client.get(f"/api/v1/tickets/{body['number']}",
                        headers={"Authorization": f"Bearer {seeded['supervisor']}"}).get_json()
    assert body["priority"] == "P1"
    assert stored["offers"][0]["state"] == "pending"


def test_statement_fits_psycopg_query_cache():
    # A longer text is converted from %(name)s placeholders again on every execution.
    assert len(_statement().encode()) <= MAX_CACHED_STATEMENT_LENGTH
