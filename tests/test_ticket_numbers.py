"""Ticket numbers: QP-YYYYMMDD-NNNN by the local (Shanghai) day, without gaps or duplicates."""

from __future__ import annotations

import threading
from datetime import datetime

import time_machine

from hotline.models import Ticket, TicketCounter
from hotline.tickets import create_ticket


def _refer(client, token, external_id):
    body = {"external_id": external_id, "category": "consultation",
            "resident": {"phone": "13812345678", "town": "金泽镇"}}
    response = client.post("/api/v1/referrals", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    return response.get_json()["number"]


def test_numbers_follow_local_day(client, seeded):
    # 15:59:59 UTC is still 23:59:59 on Dec 7 in Shanghai; one second later it is Dec 8.
    with time_machine.travel(datetime.fromisoformat("2026-12-07T23:59:59+08:00"), tick=False):
        late = [_refer(client, seeded["shequyun"], f"L{index}") for index in range(2)]
    with time_machine.travel(datetime.fromisoformat("2026-12-08T00:00:00+08:00"), tick=False):
        early = _refer(client, seeded["shequyun"], "E0")

    assert late == ["QP-20261207-0001", "QP-20261207-0002"]
    assert early == "QP-20261208-0001"


def test_concurrent_tickets_get_distinct_numbers(app, seeded):
    numbers = []

    def refer(index):
        with app.test_client() as client:
            numbers.append(_refer(client, seeded["community_worker"], f"C{index}"))

    threads = [threading.Thread(target=refer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    suffixes = sorted(int(number.rsplit("-", 1)[1]) for number in numbers)
    assert suffixes == list(range(1, 9))


def test_ticket_created_outside_intake_numbered_at_commit(runtime, seeded):
    now = datetime.fromisoformat("2026-12-07T10:00:00+08:00")
    with runtime.transaction() as session:
        ticket = create_ticket(session, runtime, now, actor="test", channel="walk_in", source="resident",
                               category="consultation")

    assert ticket.number == "QP-20261207-0001"


def test_number_past_9999_gets_five_digits(runtime, seeded):
    now = datetime.fromisoformat("2026-12-07T10:00:00+08:00")
    with runtime.transaction() as session:
        session.add(TicketCounter(day="20261207", last=9999))
    with runtime.transaction() as session:
        ticket = create_ticket(session, runtime, now, actor="test", channel="walk_in", source="resident",
                               category="consultation")

    assert ticket.number == "QP-20261207-10000"
    with runtime.transaction() as session:
        stored = session.get(Ticket, ticket.id)
        assert stored.number == "QP-20261207-10000"
