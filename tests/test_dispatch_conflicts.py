"""Dispatch by hand through the API when requests repeat or race: the ticket lock and expected_dispatch_state."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
import time_machine
from sqlmodel import func, select

from hotline.dispatch import offers
from hotline.models import Agency, Offer, OutboxMessage, Ticket, TicketEvent
from hotline.tickets import create_ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
LIANTANG = "310118103"
LIANTANG_AGENCY = "练塘福顺礼仪服务社"
DIANSHANHU_AGENCY = "上海淀山湖殡葬代理有限公司"  # also serves 练塘镇
FUNERAL_HOME = "青浦区殡仪馆接运服务队"
OPERATOR_NAME = "话务员 王丽"


def _ticket(runtime):
    """Open an agency-service ticket in 练塘镇; the dispatch job offers it to 练塘福顺 as attempt 1."""
    with runtime.transaction() as session:
        ticket = create_ticket(session, runtime, MONDAY_MORNING, actor="test", channel="referral_api",
                               source="community_worker", category="agency_service", needs=["body_transport"],
                               town_code=LIANTANG, caller_phone="+8613812345678")
    return ticket.id, ticket.number


def _offers(runtime, ticket_id):
    with runtime.transaction() as session:
        rows = session.exec(select(Offer, Agency).join(Agency, Agency.id == Offer.agency_id)
                            .where(Offer.ticket_id == ticket_id).order_by(Offer.attempt)).all()
        return [(offer.attempt, offer.state, agency.name) for offer, agency in rows]


def _sms_count(runtime, ticket_id):
    with runtime.transaction() as session:
        return session.exec(select(func.count()).select_from(OutboxMessage)
                            .where(OutboxMessage.ticket_id == ticket_id).where(OutboxMessage.channel == "sms")).one()


def _event_count(runtime, ticket_id):
    with runtime.transaction() as session:
        return session.exec(select(func.count()).select_from(TicketEvent)
                            .where(TicketEvent.ticket_id == ticket_id)).one()


def _agency_id(runtime, name):
    with runtime.transaction() as session:
        return session.exec(select(Agency.id).where(Agency.name == name)).one()


def _staff(token, language="zh-CN"):
    return {"Authorization": f"Bearer {token}", "Accept-Language": language}


def _snapshot(runtime, ticket_id):
    with runtime.transaction() as session:
        status = session.get(Ticket, ticket_id).status
    return _offers(runtime, ticket_id), _sms_count(runtime, ticket_id), _event_count(runtime, ticket_id), status


def _post_together(app, requests):
    """POST each (path, body, headers) from its own thread and test client, released at the same moment."""
    barrier = threading.Barrier(len(requests))
    responses = [None] * len(requests)

    def post(index, path, body, headers):
        with app.test_client() as client:
            barrier.wait()
            response = client.post(path, json=body, headers=headers)
            responses[index] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=post, args=(index, *request)) for index, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_shows_dispatch_state(client, runtime, seeded):
    _, number = _ticket(runtime)

    ticket = client.get(f"/api/v1/tickets/{number}", headers=_staff(seeded["operator"])).get_json()

    assert ticket["dispatch_state"] == "1:pending"
    assert ticket["offers"][0]["attempt"] == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_redispatch_sent_twice_offers_once(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    body = {"reason": "福顺回电可接", "include_tried": True, "expected_dispatch_state": "1:pending"}

    first = client.post(f"/api/v1/tickets/{number}/redispatch", json=body, headers=_staff(seeded["operator"]))
    after_first = _snapshot(runtime, ticket_id)
    second = client.post(f"/api/v1/tickets/{number}/redispatch", json=body, headers=_staff(seeded["operator"]))

    assert first.status_code == 200
    assert first.get_json()["dispatch_state"] == "2:pending"
    assert second.status_code == 409
    error = second.get_json()["error"]
    assert error["code"] == "dispatch_changed"
    assert error["field"] == "expected_dispatch_state"
    new_code = first.get_json()["offers"][1]["code"]
    assert f"已于 09:00:00 由 {OPERATOR_NAME} 重新派单" in error["message"]
    assert new_code in error["message"]
    assert "请刷新页面" in error["message"]
    assert _offers(runtime, ticket_id) == [(1, "cancelled", LIANTANG_AGENCY), (2, "pending", DIANSHANHU_AGENCY)]
    assert _snapshot(runtime, ticket_id) == after_first, "the refused request changed nothing"
    # The offer SMS, its withdrawal and the new offer: no second withdrawal and no third offer.
    assert _sms_count(runtime, ticket_id) == 3


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_concurrent_redispatch_makes_one_offer(app, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    body = {"reason": "福顺回电可接", "include_tried": True, "expected_dispatch_state": "1:pending"}
    request = (f"/api/v1/tickets/{number}/redispatch", body, _staff(seeded["operator"]))

    responses = _post_together(app, [request, request])

    assert sorted(status for status, _ in responses) == [200, 409]
    assert _offers(runtime, ticket_id) == [(1, "cancelled", LIANTANG_AGENCY), (2, "pending", DIANSHANHU_AGENCY)]
    assert _sms_count(runtime, ticket_id) == 3
    with runtime.transaction() as session:
        redispatches = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)
                                    .where(TicketEvent.kind == "redispatch")).all()
    assert len(redispatches) == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_concurrent_redispatch_without_state_serialised(app, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    body = {"reason": "福顺回电可接", "include_tried": True}
    request = (f"/api/v1/tickets/{number}/redispatch", body, _staff(seeded["operator"]))

    responses = _post_together(app, [request, request])

    assert [status for status, _ in responses] == [200, 200], "clients without the field keep working"
    assert [(attempt, state) for attempt, state, _ in _offers(runtime, ticket_id)] == [
        (1, "cancelled"), (2, "cancelled"), (3, "pending")]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_concurrent_withdrawals_withdraw_once(app, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    body = {"reason": "家属改约", "expected_dispatch_state": "1:pending"}
    request = (f"/api/v1/tickets/{number}/offers/1/cancel", body, _staff(seeded["operator"]))

    responses = _post_together(app, [request, request])

    assert sorted(status for status, _ in responses) == [200, 409]
    rejected = next(payload for status, payload in responses if status == 409)
    assert rejected["error"]["code"] == "dispatch_changed"
    assert "改为「已撤回」" in rejected["error"]["message"]
    assert _offers(runtime, ticket_id) == [(1, "cancelled", LIANTANG_AGENCY)]
    assert _sms_count(runtime, ticket_id) == 2, "one offer SMS and one withdrawal SMS"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_offer_by_hand_sent_twice_offers_once(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    headers = _staff(seeded["operator"])
    client.post(f"/api/v1/tickets/{number}/offers/1/cancel", json={"reason": "家属改约"}, headers=headers)
    body = {"agency_id": _agency_id(runtime, FUNERAL_HOME), "reason": "家属要求殡仪馆接运",
            "expected_dispatch_state": "1:cancelled"}

    first = client.post(f"/api/v1/tickets/{number}/offers", json=body, headers=headers)
    second = client.post(f"/api/v1/tickets/{number}/offers", json=body, headers=headers)

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "dispatch_changed"
    assert _offers(runtime, ticket_id) == [(1, "cancelled", LIANTANG_AGENCY), (2, "pending", FUNERAL_HOME)]
    assert _sms_count(runtime, ticket_id) == 3


@pytest.mark.parametrize("path, body", [
    ("redispatch", {"reason": "机构电话不通"}),
    ("offers/1/cancel", {"reason": "家属改约"}),
    ("offers", {"reason": "家属要求", "agency_id": 1}),
])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_stale_state_changes_nothing(client, runtime, seeded, path, body):
    ticket_id, number = _ticket(runtime)
    before = _snapshot(runtime, ticket_id)

    response = client.post(f"/api/v1/tickets/{number}/{path}", json={**body, "expected_dispatch_state": "none"},
                           headers=_staff(seeded["operator"]))

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "dispatch_changed"
    assert _snapshot(runtime, ticket_id) == before


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_stale_state_names_automatic_dispatch(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    with runtime.transaction() as session:
        first_id = session.exec(select(Offer.id).where(Offer.ticket_id == ticket_id)).one()
    offers.answer_offer(runtime, first_id, False, "agency:test", "车辆不足", MONDAY_MORNING)  # next agency at once

    response = client.post(f"/api/v1/tickets/{number}/redispatch",
                           json={"reason": "机构电话不通", "expected_dispatch_state": "1:pending"},
                           headers=_staff(seeded["operator"]))

    assert response.status_code == 409
    message = response.get_json()["error"]["message"]
    assert "由 自动派单 重新派单" in message
    assert DIANSHANHU_AGENCY in message
    assert [state for _, state, _ in _offers(runtime, ticket_id)] == ["declined", "pending"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_withdrawal_after_acceptance_rejected(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    with runtime.transaction() as session:
        first_id = session.exec(select(Offer.id).where(Offer.ticket_id == ticket_id)).one()
    agency_id = _agency_id(runtime, LIANTANG_AGENCY)
    offers.answer_offer(runtime, first_id, True, f"agency:{agency_id}", None, MONDAY_MORNING)

    response = client.post(f"/api/v1/tickets/{number}/offers/1/cancel",
                           json={"reason": "家属改约", "expected_dispatch_state": "1:pending"},
                           headers=_staff(seeded["operator"], language="en"))

    assert response.status_code == 409
    message = response.get_json()["error"]["message"]
    assert f"to {LIANTANG_AGENCY} is now accepted, changed at 09:00:00 by {LIANTANG_AGENCY}" in message
    assert "reload the page" in message
    assert _offers(runtime, ticket_id) == [(1, "accepted", LIANTANG_AGENCY)]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_state_ahead_of_ticket_rejected(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)

    response = client.post(f"/api/v1/tickets/{number}/redispatch",
                           json={"reason": "机构电话不通", "expected_dispatch_state": "5:pending"},
                           headers=_staff(seeded["operator"]))

    assert response.status_code == 409
    assert "派单状态为 1:pending，而不是请求中的 5:pending" in response.get_json()["error"]["message"]
    assert _offers(runtime, ticket_id) == [(1, "pending", LIANTANG_AGENCY)]


@pytest.mark.parametrize("value, code", [
    ("pending", "invalid_value"),
    ("0:pending", "invalid_value"),
    ("1:sent", "invalid_value"),
    ("1:pending\n", "invalid_value"),
    (1, "invalid_type"),
])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_malformed_expected_state_rejected(client, runtime, seeded, value, code):
    ticket_id, number = _ticket(runtime)

    response = client.post(f"/api/v1/tickets/{number}/redispatch",
                           json={"reason": "机构电话不通", "expected_dispatch_state": value},
                           headers=_staff(seeded["operator"]))

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["field"] == "expected_dispatch_state"
    assert _offers(runtime, ticket_id) == [(1, "pending", LIANTANG_AGENCY)]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_null_expected_state_not_checked(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)

    response = client.post(f"/api/v1/tickets/{number}/redispatch",
                           json={"reason": "机构电话不通", "expected_dispatch_state": None},
                           headers=_staff(seeded["operator"]))

    assert response.status_code == 200
    assert [state for _, state, _ in _offers(runtime, ticket_id)] == ["cancelled", "pending"]
