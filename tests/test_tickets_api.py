"""The staff API: queue order, filters, ticket details, claiming and status changes."""

from __future__ import annotations

import threading
from datetime import datetime
from urllib.parse import urlsplit

import pytest
import time_machine
from sqlmodel import select

from hotline.models import SlaClock, Ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


def _refer(client, token, external_id, category="consultation", needs=(), flags=(), town="金泽镇"):
    body = {"external_id": external_id, "category": category, "needs": list(needs), "flags": list(flags),
            "resident": {"name": "居民", "phone": "13812345678", "town": town}}
    response = client.post("/api/v1/referrals", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["number"]


def _get(client, token, path):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def _post(client, token, path, body=None):
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_queue_orders_priority_then_referral(client, seeded):
    consultation = _refer(client, seeded["community_worker"], "A", category="consultation")
    urgent = _refer(client, seeded["shequyun"], "B", category="agency_service", needs=["body_transport"])
    vulnerable = _refer(client, seeded["elderly_advisor"], "C", category="consultation", flags=["solitary_elderly"])

    items = _get(client, seeded["operator"], "/api/v1/tickets").get_json()["items"]

    assert [item["number"] for item in items] == [urgent, vulnerable, consultation]
    assert items[0]["priority"] == "P1"
    assert any("body-transport" in reason for reason in items[0]["priority_reasons"])


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_list_filters_and_paging(client, seeded):
    for index in range(5):
        _refer(client, seeded["community_worker"], f"R{index}", town="练塘镇" if index % 2 else "金泽镇")

    town = _get(client, seeded["operator"], "/api/v1/tickets?town=练塘镇").get_json()["items"]
    page = _get(client, seeded["operator"], "/api/v1/tickets?limit=2").get_json()
    by_external = _get(client, seeded["operator"], "/api/v1/tickets?external_id=R3").get_json()["items"]

    assert len(town) == 2
    assert len(page["items"]) == 2
    assert "offset=2" in page["next"]
    assert [item["external_id"] for item in by_external] == ["R3"]


@pytest.mark.parametrize("query, field", [
    ("status=lost", "status"), ("priority=P9", "priority"), ("town=浦东", "town"), ("limit=501", "limit"),
    ("source=mayor", "source"),
])
def test_list_bad_filter_rejected(client, seeded, query, field):
    response = _get(client, seeded["operator"], f"/api/v1/tickets?{query}")

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_list_needs_staff_token(client, seeded):
    assert _get(client, seeded["shequyun"], "/api/v1/tickets").status_code == 403
    assert client.get("/api/v1/tickets").status_code == 401


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_detail_shows_trace_clocks_events(client, seeded):
    number = _refer(client, seeded["community_worker"], "D", category="agency_service", needs=["body_transport"],
                    town="练塘镇")

    ticket = _get(client, seeded["operator"], f"/api/v1/tickets/{number}").get_json()

    assert ticket["caller_phone"] == "+8613812345678"
    assert ticket["rule_set_version"]
    assert any(step["matched"] for step in ticket["rule_trace"])
    first_response = next(clock for clock in ticket["sla"] if clock["target"] == "first_response")
    assert first_response["due_at"] == "2026-12-07T09:15:00+08:00"
    assert first_response["calendar"] == "24x7"
    assert ticket["offers"][0]["accept_by"] == "2026-12-07T09:15:00+08:00"
    assert [event["kind"] for event in ticket["events"]][:1] == ["created"]


def test_detail_unknown_number_404(client, seeded):
    response = _get(client, seeded["operator"], "/api/v1/tickets/QP-20261207-9999")

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_claim_meets_first_response(client, seeded, runtime):
    number = _refer(client, seeded["community_worker"], "E")

    response = _post(client, seeded["operator"], f"/api/v1/tickets/{number}/claim")
    again = _post(client, seeded["supervisor"], f"/api/v1/tickets/{number}/claim")

    assert response.status_code == 200
    assert response.get_json()["status"] == "in_progress"
    assert again.status_code == 409
    with runtime.transaction() as session:
        clock = session.exec(select(SlaClock).where(SlaClock.target == "first_response")).one()
    assert clock.state == "met"


def test_concurrent_claims_one_winner(app, seeded, runtime):
    with app.test_client() as client:
        number = _refer(client, seeded["community_worker"], "F")
    statuses = []

    def claim(token):
        with app.test_client() as own_client:
            statuses.append(_post(own_client, token, f"/api/v1/tickets/{number}/claim").status_code)

    threads = [threading.Thread(target=claim, args=(seeded[role],)) for role in ("operator", "supervisor") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 409, 409, 409]


def test_transitions_follow_status_machine(client, seeded):
    number = _refer(client, seeded["community_worker"], "G")
    path = f"/api/v1/tickets/{number}/transitions"

    assert _post(client, seeded["operator"], path, {"to": "closed"}).status_code == 409
    missing_reason = _post(client, seeded["operator"], path, {"to": "waiting"})
    assert missing_reason.status_code == 422
    assert missing_reason.get_json()["error"]["field"] == "reason"
    assert "等待回复" in missing_reason.get_json()["error"]["message"], "the status is named, not its code"
    assert _post(client, seeded["operator"], path, {"to": "waiting", "reason": "等待家属提供证明"}).status_code == 200
    resolved = _post(client, seeded["operator"], path, {"to": "resolved"})
    assert resolved.status_code == 200
    assert resolved.get_json()["status"] == "resolved"
    assert all(clock["state"] in ("met", "breached") for clock in resolved.get_json()["sla"])


def test_transition_bad_body_rejected(client, seeded, runtime):
    number = _refer(client, seeded["community_worker"], "H")
    path = f"/api/v1/tickets/{number}/transitions"

    assert _post(client, seeded["operator"], path, {"to": "flying"}).get_json()["error"]["field"] == "to"
    assert _post(client, seeded["operator"], path, {"to": "resolved", "reason": 5}).status_code == 422
    with runtime.transaction() as session:
        assert session.exec(select(Ticket)).one().status == "new"


def test_overdue_lists_breached_tickets(client, seeded, runtime):
    from hotline.sla.sweep import sweep_breaches

    with time_machine.travel(MONDAY_MORNING, tick=False):
        number = _refer(client, seeded["community_worker"], "I")
    with time_machine.travel(datetime.fromisoformat("2026-12-09T09:00:00+08:00"), tick=False):
        sweep_breaches(runtime)
        items = _get(client, seeded["supervisor"], "/api/v1/sla/overdue").get_json()["items"]

    assert [item["number"] for item in items] == [number]


def test_agencies_listed(client, seeded):
    items = _get(client, seeded["operator"], "/api/v1/agencies").get_json()["items"]

    kinds = {item["kind"] for item in items}
    assert kinds == {"funeral_home", "agency"}
    assert all({"id", "name", "kind", "status", "towns", "services", "capacity"} <= set(item) for item in items)


def test_claim_finished_ticket_rejected(client, seeded):
    number = _refer(client, seeded["community_worker"], "J")
    _post(client, seeded["operator"], f"/api/v1/tickets/{number}/transitions", {"to": "cancelled", "reason": "重复"})

    response = _post(client, seeded["supervisor"], f"/api/v1/tickets/{number}/claim")

    assert response.status_code == 409


def test_transition_missing_target_required(client, seeded):
    number = _refer(client, seeded["community_worker"], "K")

    response = _post(client, seeded["operator"], f"/api/v1/tickets/{number}/transitions", {})

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "required"
    assert response.get_json()["error"]["field"] == "to"


def test_overdue_pages(client, seeded, runtime):
    from hotline.sla.sweep import sweep_breaches

    with time_machine.travel(MONDAY_MORNING, tick=False):
        numbers = [_refer(client, seeded["community_worker"], f"O{index}") for index in range(3)]
    with time_machine.travel(datetime.fromisoformat("2026-12-09T09:00:00+08:00"), tick=False):
        sweep_breaches(runtime)
        first = _get(client, seeded["supervisor"], "/api/v1/sla/overdue?limit=2").get_json()
        next_page = urlsplit(first["next"])
        second = _get(client, seeded["supervisor"], f"{next_page.path}?{next_page.query}").get_json()

    assert len(first["items"]) == 2
    assert second["next"] is None
    assert sorted(item["number"] for item in first["items"] + second["items"]) == sorted(numbers)
