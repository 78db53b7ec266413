"""The ticket page's dispatch panel: agencies with why, and dispatch by hand from the browser forms."""

from __future__ import annotations

import re
import threading
from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from web_helpers import csrf_token, log_in, post_form, refer

from hotline.dispatch import offers
from hotline.models import Agency, Offer, OutboxMessage, Ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
FUNERAL_HOME = "青浦区殡仪馆接运服务队"
EXPECTED_STATE_FIELD = re.compile(r'name="expected_dispatch_state" value="([^"]*)"')


@pytest.fixture
def operator(client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "operator").status_code == 302
    return client


def _offers(runtime, number):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return session.exec(select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt)).all()


def _agency_id(runtime, name):
    with runtime.transaction() as session:
        return session.exec(select(Agency.id).where(Agency.name == name)).one()


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_panel_explains_each_agency(operator, seeded):
    number = refer(operator, seeded["shequyun"], "P-1", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    assert 'id="dispatch-heading"' in page
    assert "青浦安泰殡葬服务有限公司" in page
    assert "不服务本街镇" in page, "an agency of other towns is shown with the reason"
    assert "已派过此单" in page, "the agency holding the live offer"
    assert "撤回派单" in page, "a live offer can be withdrawn"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_panel_reasons_in_english(operator, seeded):
    number = refer(operator, seeded["shequyun"], "P-9", category="agency_service", needs=["body_transport"],
                   town="练塘镇")
    post_form(operator, f"/tickets/{number}/dispatch/cancel", {"attempt": "1", "reason": "家属改约"})

    page = operator.get(f"/tickets/{number}?lang=en").get_data(as_text=True)

    assert "Cannot take it: does not serve this town" in page
    assert "(does not serve this town" in page, "the agency choice for dispatch by hand"
    assert "Cannot take it：" not in page
    assert "（does not serve" not in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_system_reasons_in_page_language(operator, seeded):
    number = refer(operator, seeded["shequyun"], "P-10", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    english = operator.get(f"/tickets/{number}?lang=en").get_data(as_text=True)
    chinese = operator.get(f"/tickets/{number}?lang=zh").get_data(as_text=True)

    assert "Offered to an agency" in english
    assert "派单给代理机构" not in english
    assert "派单给代理机构" in chinese


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_withdraw_then_offer_by_hand(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "P-2", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    withdrawn = post_form(operator, f"/tickets/{number}/dispatch/cancel", {"attempt": "1", "reason": "家属改约"})
    offered = post_form(operator, f"/tickets/{number}/dispatch/offer",
                        {"agency_id": str(_agency_id(runtime, FUNERAL_HOME)), "reason": "家属要求殡仪馆接运"})

    assert withdrawn.status_code == 302
    assert offered.status_code == 302
    first, second = _offers(runtime, number)
    assert first.state == "cancelled"
    assert (second.target_id, second.reason) == ("manual", "人工派单：家属要求殡仪馆接运")
    page = operator.get(f"/tickets/{number}").get_data(as_text=True)
    assert "派单已发出" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_missing_reason_flashed_and_nothing_changes(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "P-3", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    post_form(operator, f"/tickets/{number}/dispatch/cancel", {"attempt": "1", "reason": " "})

    assert _offers(runtime, number)[0].state == "pending"
    page = operator.get(f"/tickets/{number}").get_data(as_text=True)
    assert "请填写原因" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_dispatch_again_from_page(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "P-4", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    post_form(operator, f"/tickets/{number}/dispatch/again", {"reason": "机构电话不通"})

    first, second = _offers(runtime, number)
    assert first.state == "cancelled"
    assert second.state == "pending"
    assert second.agency_id != first.agency_id


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_no_panel_for_consultation(operator, seeded):
    number = refer(operator, seeded["shequyun"], "P-5")

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    assert 'id="dispatch-heading"' not in page


def test_panel_actions_need_login(client, runtime, seeded):
    response = client.post("/tickets/QP-20261207-0001/dispatch/again", data={"reason": "x"})

    assert response.status_code in (302, 400)


# --- forms sent twice or by two operators at once ---------------------------------------------------


def _expected_state(client, number):
    page = client.get(f"/tickets/{number}").get_data(as_text=True)
    states = set(EXPECTED_STATE_FIELD.findall(page))
    assert len(states) == 1, f"every dispatch form carries the same state, found {states}"
    return states.pop()


def _sms_count(runtime, number):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return len(session.exec(select(OutboxMessage.id).where(OutboxMessage.ticket_id == ticket.id)
                                .where(OutboxMessage.channel == "sms")).all())


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_forms_carry_dispatch_state(operator, seeded):
    number = refer(operator, seeded["shequyun"], "P-6", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    assert _expected_state(operator, number) == "1:pending"
    post_form(operator, f"/tickets/{number}/dispatch/cancel", {"attempt": "1", "reason": "家属改约"})
    assert _expected_state(operator, number) == "1:cancelled", "the offer and dispatch-again forms carry it too"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_dispatch_again_sent_twice_offers_once(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "P-7", category="agency_service", needs=["body_transport"],
                   town="练塘镇")
    form = {"reason": "福顺回电可接", "include_tried": "yes",
            "expected_dispatch_state": _expected_state(operator, number)}

    first = post_form(operator, f"/tickets/{number}/dispatch/again", form)
    second = post_form(operator, f"/tickets/{number}/dispatch/again", form)

    assert first.status_code == 302
    assert second.status_code == 409
    page = second.get_data(as_text=True)
    new_offer = _offers(runtime, number)[1]
    assert 'id="dispatch-error"' in page
    assert "已于 09:00:00 由 话务员 王丽 重新派单" in page
    assert new_offer.code in page
    assert 'name="expected_dispatch_state" value="2:pending"' in page, "the page shows the current state"
    assert [offer.state for offer in _offers(runtime, number)] == ["cancelled", "pending"]
    assert _sms_count(runtime, number) == 3, "the offer, its withdrawal and the new offer"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_two_operators_dispatch_again_at_once(app, operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "P-8", category="agency_service", needs=["body_transport"],
                   town="练塘镇")
    supervisor = app.test_client()
    assert log_in(supervisor, "supervisor").status_code == 302
    forms = [{"reason": reason, "expected_dispatch_state": _expected_state(client, number),
              "csrf_token": csrf_token(client, "/tickets/new")}
             for client, reason in ((operator, "机构电话不通"), (supervisor, "机构车辆故障"))]
    barrier = threading.Barrier(2)
    statuses = {}

    def post(client, form):
        barrier.wait()
        statuses[form["reason"]] = client.post(f"/tickets/{number}/dispatch/again", data=form).status_code

    threads = [threading.Thread(target=post, args=pair) for pair in zip((operator, supervisor), forms, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses.values()) == [302, 409]
    assert [offer.state for offer in _offers(runtime, number)] == ["cancelled", "pending"]
    assert _sms_count(runtime, number) == 3


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_withdraw_after_acceptance_shows_message(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "P-9", category="agency_service", needs=["body_transport"],
                   town="练塘镇")
    expected = _expected_state(operator, number)
    offer = _offers(runtime, number)[0]
    offers.answer_offer(runtime, offer.id, True, f"agency:{offer.agency_id}", None, MONDAY_MORNING)

    response = post_form(operator, f"/tickets/{number}/dispatch/cancel",
                         {"attempt": "1", "reason": "家属改约", "expected_dispatch_state": expected})

    assert response.status_code == 409
    assert "改为「已接单」" in response.get_data(as_text=True)
    assert _offers(runtime, number)[0].state == "accepted"
