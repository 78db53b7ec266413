"""The ticket page's dispatch panel: agencies with why, and dispatch by hand from the browser forms."""

from __future__ import annotations

from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from web_helpers import log_in, post_form, refer

from hotline.models import Agency, Offer, Ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
FUNERAL_HOME = "青浦区殡仪馆接运服务队"


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
