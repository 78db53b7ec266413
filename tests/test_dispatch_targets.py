"""Dispatch targets from dispatch.yaml, the family's chosen agency, and dispatch by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlmodel import select

from hotline.dispatch import offers
from hotline.dispatch.config import load_dispatch_config
from hotline.models import Agency, Offer, OutboxMessage, SlaClock, Ticket, TicketEvent
from hotline.rules.expressions import RuleError
from hotline.tickets import create_ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
LIANTANG = "310118103"
FUNERAL_HOME = "青浦区殡仪馆接运服务队"
LIANTANG_AGENCY = "练塘福顺礼仪服务社"
DIANSHANHU_AGENCY = "上海淀山湖殡葬代理有限公司"  # also serves 练塘镇


def _ticket(runtime, town=LIANTANG, chosen_agency_id=None):
    with runtime.transaction() as session:
        ticket = create_ticket(session, runtime, MONDAY_MORNING, actor="test", channel="referral_api",
                               source="community_worker", category="agency_service", needs=["body_transport"],
                               town_code=town, caller_phone="+8613812345678", chosen_agency_id=chosen_agency_id)
    return ticket.id, ticket.number  # numbered when the transaction commits


def _agency_id(runtime, name):
    with runtime.transaction() as session:
        return session.exec(select(Agency.id).where(Agency.name == name)).one()


def _offers(runtime, ticket_id):
    with runtime.transaction() as session:
        rows = session.exec(select(Offer, Agency).join(Agency, Agency.id == Offer.agency_id)
                            .where(Offer.ticket_id == ticket_id).order_by(Offer.attempt)).all()
        return [(offer, agency.name) for offer, agency in rows]


def _ticket_row(runtime, ticket_id):
    with runtime.transaction() as session:
        return session.get(Ticket, ticket_id)


def _events(runtime, ticket_id, kind):
    with runtime.transaction() as session:
        return session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)
                            .where(TicketEvent.kind == kind)).all()


def _staff(token):
    return {"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dispatch.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- dispatch.yaml ---------------------------------------------------------------------------------


def test_shipped_targets_in_order(runtime):
    config = runtime.component("dispatch")

    assert [target.id for target in config.targets] == ["chosen-agency", "pilot-agencies", "funeral-home-team"]
    assert config.targets[0].select.text == "chosen"
    assert config.targets[1].when.text == "pilot_town"
    assert all(target.timeout_seconds == 900 for target in config.targets)


@pytest.mark.parametrize("target, message", [
    ("{id: a, kinds: [agency], select: 'fleet > 2'}", "unknown name 'fleet'"),
    ("{id: a, kinds: [agency], select: 'kind =='}", "invalid select"),
    ("{id: a, kinds: [agency], when: 'weather == \"rain\"'}", "unknown name 'weather'"),
    ("{id: a, kinds: [agency], skip_if: [sometimes]}", "skip_if: unknown values ['sometimes']"),
    ("{id: a, kinds: [agency], timeout: soon}", "timeout:"),
    ("{id: a, kinds: [agency], wait: 5m}", "unknown keys ['wait']"),
])
def test_bad_target_named_in_error(tmp_path, target, message):
    path = _write(tmp_path, f"targets:\n  - {target}\n")

    with pytest.raises(RuleError) as error:
        load_dispatch_config(path)

    assert "target a" in str(error.value)
    assert message in str(error.value)


def test_repeated_target_id_rejected(tmp_path):
    path = _write(tmp_path, "targets:\n  - {id: a, kinds: [agency]}\n  - {id: a, kinds: [funeral_home]}\n")

    with pytest.raises(RuleError, match="repeated: \\['a'\\]"):
        load_dispatch_config(path)


def test_target_timeout_sets_offer_deadline(tmp_path):
    config = load_dispatch_config(_write(tmp_path, "offer_timeout: 20m\ntargets:\n"
                                                   "  - {id: a, kinds: [agency], timeout: 5m}\n"
                                                   "  - {id: b, kinds: [funeral_home]}\n"))

    assert [target.timeout_seconds for target in config.targets] == [300, 1200]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_offer_deadline_from_its_target(runtime, seeded):
    config = runtime.component("dispatch")
    runtime.components["dispatch"] = replace(config, targets=tuple(
        replace(target, timeout_seconds=600) if target.id == "pilot-agencies" else target
        for target in config.targets))

    ticket_id, _ = _ticket(runtime)

    [(offer, name)] = _offers(runtime, ticket_id)
    assert name == LIANTANG_AGENCY
    assert offer.target_id == "pilot-agencies"
    assert offer.accept_by == MONDAY_MORNING + timedelta(minutes=10)


# --- the family's chosen agency ----------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_chosen_agency_offered_first(runtime, seeded):
    ticket_id, _ = _ticket(runtime, chosen_agency_id=_agency_id(runtime, FUNERAL_HOME))

    [(offer, name)] = _offers(runtime, ticket_id)
    assert name == FUNERAL_HOME
    assert offer.target_id == "chosen-agency"
    assert "家属指定" in offer.reason


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ineligible_choice_falls_to_rotation(runtime, seeded):
    far_agency = _agency_id(runtime, "青浦安泰殡葬服务有限公司")  # does not serve 练塘镇

    ticket_id, _ = _ticket(runtime, chosen_agency_id=far_agency)

    [(offer, name)] = _offers(runtime, ticket_id)
    assert name == LIANTANG_AGENCY
    assert offer.target_id == "pilot-agencies"
    assert "此前跳过：家属指定的代理机构（符合条件时优先）——无符合条件的机构" in offer.reason


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referral_names_chosen_agency(client, runtime, seeded):
    body = {"external_id": "C-1", "category": "agency_service", "needs": ["body_transport"],
            "chosen_agency": FUNERAL_HOME, "resident": {"phone": "13812345678", "town": "练塘镇"}}

    response = client.post("/api/v1/referrals", json=body, headers=_staff(seeded["shequyun"]))

    assert response.status_code == 201
    ticket = _ticket_row(runtime, _ticket_id_of(runtime, response.get_json()["number"]))
    assert ticket.chosen_agency_id == _agency_id(runtime, FUNERAL_HOME)


def test_unknown_chosen_agency_lists_agencies(client, runtime, seeded):
    body = {"external_id": "C-2", "category": "agency_service", "chosen_agency": "不存在的公司",
            "resident": {"phone": "13812345678", "town": "练塘镇"}}

    response = client.post("/api/v1/referrals", json=body, headers=_staff(seeded["shequyun"]))

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "chosen_agency"
    assert LIANTANG_AGENCY in error["message"]


def _ticket_id_of(runtime, number):
    with runtime.transaction() as session:
        return session.exec(select(Ticket.id).where(Ticket.number == number)).one()


# --- decline reason codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("reason, code", [
    ("车辆不在", "no_vehicle"),
    ("今天没人", "no_staff"),
    ("太远了", "out_of_area"),
    ("我们不提供接运", "service_not_offered"),
    ("家里有事", "other"),
    (None, "other"),
])
def test_decline_code_read_from_words(reason, code):
    assert offers.decline_code_of(reason) == code


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_decline_code_from_offer_page(client, runtime, seeded):
    ticket_id, _ = _ticket(runtime)
    [(offer, _)] = _offers(runtime, ticket_id)
    token = offers.offer_token(runtime.settings.secret_key, offer.id)

    client.post(f"/offers/{token}", data={"action": "decline", "decline_code": "out_of_area", "reason": ""})

    declined = _offers(runtime, ticket_id)[0][0]
    assert declined.decline_code == "out_of_area"
    [event] = _events(runtime, ticket_id, "offer_declined")
    assert event.reason == "超出服务范围"
    assert event.data["decline_code"] == "out_of_area"


# --- holding on a busy target ----------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_busy_target_without_skip_holds_ticket(runtime, seeded):
    config = runtime.component("dispatch")
    runtime.components["dispatch"] = replace(config, targets=tuple(
        replace(target, skip_if=frozenset({"nobody_eligible"})) if target.id == "pilot-agencies" else target
        for target in config.targets))
    with runtime.transaction() as session:
        for agency in session.exec(select(Agency).where(Agency.kind == "agency")).all():
            agency.capacity = 1
            session.add(agency)
    first, _ = _ticket(runtime)
    _ticket(runtime)  # the two agencies serving 练塘镇 now each have one job

    third, _ = _ticket(runtime)

    assert _offers(runtime, third) == []
    assert "dispatch_held" in _ticket_row(runtime, third).tags
    assert [event.to_value for event in _events(runtime, third, "dispatch_held")] == ["pilot-agencies"]

    offers.answer_offer(runtime, _offers(runtime, first)[0][0].id, False, "agency:test", "车辆不足", MONDAY_MORNING)
    offers.dispatch_ticket(runtime, third, MONDAY_MORNING)

    [(offer, name)] = _offers(runtime, third)
    assert name == LIANTANG_AGENCY
    assert "dispatch_held" not in _ticket_row(runtime, third).tags


# --- dispatch by hand -----------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_operator_cancels_then_dispatches_by_hand(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    home = _agency_id(runtime, FUNERAL_HOME)

    busy = client.post(f"/api/v1/tickets/{number}/offers", json={"agency_id": home, "reason": "家属要求"},
                       headers=_staff(seeded["operator"]))
    cancelled = client.post(f"/api/v1/tickets/{number}/offers/1/cancel", json={"reason": "家属改约殡仪馆"},
                            headers=_staff(seeded["operator"]))
    manual = client.post(f"/api/v1/tickets/{number}/offers", json={"agency_id": home, "reason": "家属要求"},
                         headers=_staff(seeded["operator"]))

    assert busy.status_code == 409
    assert busy.get_json()["error"]["code"] == "offer_live"
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "in_progress"
    assert manual.status_code == 201
    (first, _), (second, name) = _offers(runtime, ticket_id)
    assert first.state == "cancelled"
    assert first.response_reason == "家属改约殡仪馆"
    assert (second.target_id, name) == ("manual", FUNERAL_HOME)
    assert second.reason == "人工派单：家属要求"
    assert _ticket_row(runtime, ticket_id).status == "dispatching"
    with runtime.transaction() as session:
        key = f"offer:{first.id}:cancelled"
        notice = session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).one()
    assert "已撤销" in notice.body


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_offer_by_hand_names_rules_set_aside(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    headers = _staff(seeded["operator"])
    client.post(f"/api/v1/tickets/{number}/offers/1/cancel", json={"reason": "家属另有安排"}, headers=headers)

    response = client.post(f"/api/v1/tickets/{number}/offers",
                           json={"agency_id": _agency_id(runtime, "青浦安泰殡葬服务有限公司"), "reason": "家属指定"},
                           headers=headers)

    assert response.status_code == 201
    offer = _offers(runtime, ticket_id)[-1][0]
    assert offer.reason == "人工派单：家属指定（话务员指定，未按常规：不在该机构服务街镇内）"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_cancelling_accepted_offer_stops_on_site(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    [(offer, _)] = _offers(runtime, ticket_id)
    offers.answer_offer(runtime, offer.id, True, "agency:test", None, MONDAY_MORNING)

    response = client.post(f"/api/v1/tickets/{number}/offers/1/cancel", json={"reason": "机构车辆故障"},
                           headers=_staff(seeded["supervisor"]))

    assert response.status_code == 200
    ticket = _ticket_row(runtime, ticket_id)
    assert ticket.agency_id is None
    assert ticket.status == "in_progress"
    with runtime.transaction() as session:
        on_site = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket_id)
                               .where(SlaClock.target == "on_site")).one()
    assert on_site.state == "cancelled"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_redispatch_skips_tried_unless_asked(client, runtime, seeded):
    ticket_id, number = _ticket(runtime)
    headers = _staff(seeded["operator"])

    client.post(f"/api/v1/tickets/{number}/redispatch", json={"reason": "练塘福顺电话未接"}, headers=headers)
    client.post(f"/api/v1/tickets/{number}/redispatch", json={"reason": "福顺回电可接", "include_tried": True},
                headers=headers)

    names = [(offer.state, name) for offer, name in _offers(runtime, ticket_id)]
    assert names == [("cancelled", LIANTANG_AGENCY), ("cancelled", DIANSHANHU_AGENCY), ("pending", LIANTANG_AGENCY)]
    assert len(_events(runtime, ticket_id, "redispatch")) == 2


@pytest.mark.parametrize("path, body, status, code, field", [
    ("offers", {"agency_id": 1}, 422, "reason_required", "reason"),
    ("offers", {"reason": "家属要求"}, 422, "required", "agency_id"),
    ("offers", {"agency_id": "1", "reason": "家属要求"}, 422, "invalid_type", "agency_id"),
    ("offers", {"agency_id": 999, "reason": "家属要求"}, 404, "not_found", "agency_id"),
    ("offers/7/cancel", {"reason": "家属要求"}, 404, "not_found", "attempt"),
    ("redispatch", {"reason": "家属要求", "include_tried": "yes"}, 422, "invalid_type", "include_tried"),
])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_bad_dispatch_request_changes_nothing(client, runtime, seeded, path, body, status, code, field):
    ticket_id, number = _ticket(runtime)
    before = [(offer.state, name) for offer, name in _offers(runtime, ticket_id)]

    response = client.post(f"/api/v1/tickets/{number}/{path}", json=body, headers=_staff(seeded["operator"]))

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["field"] == field
    assert [(offer.state, name) for offer, name in _offers(runtime, ticket_id)] == before


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_suspended_agency_refused_by_hand(client, runtime, seeded):
    _, number = _ticket(runtime)
    client.post(f"/api/v1/tickets/{number}/offers/1/cancel", json={"reason": "改派"},
                headers=_staff(seeded["operator"]))
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == FUNERAL_HOME)).one()
        agency.status = "suspended"
        session.add(agency)
        agency_id = agency.id

    response = client.post(f"/api/v1/tickets/{number}/offers", json={"agency_id": agency_id, "reason": "家属要求"},
                           headers=_staff(seeded["operator"]))

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "agency_not_eligible"


def test_referral_token_cannot_dispatch(client, runtime, seeded):
    _, number = _ticket(runtime)

    response = client.post(f"/api/v1/tickets/{number}/redispatch", json={"reason": "x"},
                           headers=_staff(seeded["shequyun"]))

    assert response.status_code == 403
