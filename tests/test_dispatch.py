"""Dispatch of agency-service tickets: eligibility, rotation, replies, time-outs and escalation."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import time_machine
from sqlmodel import select

from hotline.dispatch import offers
from hotline.models import Agency, Offer, OutboxMessage, SlaClock, Ticket, TicketEvent
from hotline.telephony.signatures import compute_signature
from hotline.tickets import create_ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
PUBLIC = "https://hotline.example.test"


def _ticket(runtime, town="310118103", needs=("body_transport",), category="agency_service"):
    with runtime.transaction() as session:
        ticket = create_ticket(session, runtime, MONDAY_MORNING, actor="test", channel="referral_api",
                               source="community_worker", category=category, needs=list(needs),
                               town_code=town, caller_phone="+8613812345678")
        return ticket.id


def _offers(runtime, ticket_id):
    with runtime.transaction() as session:
        return session.exec(select(Offer).where(Offer.ticket_id == ticket_id).order_by(Offer.attempt)).all()


def _agency(runtime, offer):
    with runtime.transaction() as session:
        return session.get(Agency, offer.agency_id)


def _events(runtime, ticket_id, kind):
    with runtime.transaction() as session:
        return session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)
                            .where(TicketEvent.kind == kind)).all()


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_pilot_town_goes_to_agency_first(runtime, seeded):
    ticket_id = _ticket(runtime, town="310118103")

    [offer] = _offers(runtime, ticket_id)
    agency = _agency(runtime, offer)
    assert agency.kind == "agency"
    assert "310118103" in agency.towns
    assert offer.accept_by - offer.sent_at == timedelta(minutes=15)
    assert "轮转" in offer.reason


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_other_town_goes_to_funeral_home(runtime, seeded):
    ticket_id = _ticket(runtime, town="310118104")

    [offer] = _offers(runtime, ticket_id)
    assert _agency(runtime, offer).kind == "funeral_home"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_service_not_offered_skips_agency(runtime, seeded):
    # 练塘福顺 serves 练塘 but offers no eco-burial; 淀山湖 does.
    ticket_id = _ticket(runtime, town="310118103", needs=("eco_burial",))

    [offer] = _offers(runtime, ticket_id)
    assert _agency(runtime, offer).name == "上海淀山湖殡葬代理有限公司"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_rotation_spreads_offers(runtime, seeded):
    first = _offers(runtime, _ticket(runtime, town="310118103"))[0]
    second = _offers(runtime, _ticket(runtime, town="310118103"))[0]

    assert first.agency_id != second.agency_id


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_expired_licence_not_offered(runtime, seeded):
    with runtime.transaction() as session:
        for agency in session.exec(select(Agency).where(Agency.kind == "agency")).all():
            agency.licence_expires_on = date(2026, 12, 6)
            session.add(agency)

    [offer] = _offers(runtime, _ticket(runtime, town="310118103"))
    assert _agency(runtime, offer).kind == "funeral_home"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_suspended_agency_not_offered(runtime, seeded):
    with runtime.transaction() as session:
        for agency in session.exec(select(Agency).where(Agency.kind == "agency")).all():
            agency.status = "suspended"
            session.add(agency)

    [offer] = _offers(runtime, _ticket(runtime, town="310118002"))
    assert _agency(runtime, offer).kind == "funeral_home"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_dispatch_twice_makes_one_offer(runtime, seeded):
    ticket_id = _ticket(runtime)

    offers.dispatch_ticket(runtime, ticket_id, MONDAY_MORNING)
    offers.dispatch_ticket(runtime, ticket_id, MONDAY_MORNING)

    assert len(_offers(runtime, ticket_id)) == 1
    with runtime.transaction() as session:
        assert len(session.exec(select(OutboxMessage).where(OutboxMessage.channel == "sms")).all()) == 1


def test_timeout_moves_to_next_agency(runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        ticket_id = _ticket(runtime, town="310118103")
    [first] = _offers(runtime, ticket_id)

    offers.expire_offers(runtime, first.accept_by - timedelta(seconds=1))
    assert _offers(runtime, ticket_id)[0].state == "pending"

    with time_machine.travel(first.accept_by, tick=False):
        assert offers.expire_offers(runtime, first.accept_by) == 1
        assert offers.expire_offers(runtime, first.accept_by) == 0

    first_after, second = _offers(runtime, ticket_id)
    assert first_after.state == "timed_out"
    assert second.attempt == 2
    assert second.agency_id != first.agency_id
    assert len(_events(runtime, ticket_id, "offer_timed_out")) == 1


def test_late_accept_changes_nothing(runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        ticket_id = _ticket(runtime)
    [offer] = _offers(runtime, ticket_id)

    answer = offers.answer_offer(runtime, offer.id, True, "agency:x", None, offer.accept_by)

    assert not answer.ok
    assert _offers(runtime, ticket_id)[0].state == "pending"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_accept_by_sms_reply(client, runtime, seeded):
    ticket_id = _ticket(runtime)
    [offer] = _offers(runtime, ticket_id)
    agency = _agency(runtime, offer)
    form = {"From": agency.contact_phone, "To": "+862159200496", "Body": f"{offer.code.lower()} 接",
            "MessageSid": "SM1"}

    response = client.post("/twilio/sms", data=form,
                           headers={"X-Twilio-Signature": compute_signature("test-auth-token", PUBLIC + "/twilio/sms",
                                                                            form)})

    assert response.status_code == 200
    assert "已确认接单".encode() in response.data
    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket.status == "dispatched"
        assert ticket.agency_id == agency.id


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_sms_reply_from_other_phone_ignored(client, runtime, seeded):
    ticket_id = _ticket(runtime)
    [offer] = _offers(runtime, ticket_id)
    form = {"From": "+8613999999999", "To": "+862159200496", "Body": f"{offer.code} 接", "MessageSid": "SM2"}

    client.post("/twilio/sms", data=form,
                headers={"X-Twilio-Signature": compute_signature("test-auth-token", PUBLIC + "/twilio/sms", form)})

    assert _offers(runtime, ticket_id)[0].state == "pending"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_decline_by_link_moves_on(client, runtime, seeded):
    ticket_id = _ticket(runtime, town="310118103")
    [offer] = _offers(runtime, ticket_id)
    token = offers.offer_token(runtime.settings.secret_key, offer.id)

    page = client.get(f"/offers/{token}")
    assert page.status_code == 200
    assert offer.code in page.get_data(as_text=True)

    response = client.post(f"/offers/{token}", data={"action": "decline", "reason": "车辆不足"})

    assert response.status_code == 200
    first, second = _offers(runtime, ticket_id)
    assert first.state == "declined"
    assert first.response_reason == "车辆不足"
    assert second.agency_id != first.agency_id


def _clocks(runtime, ticket_id):
    with runtime.transaction() as session:
        return {clock.target: clock for clock in
                session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket_id)).all()}


def _sms_reply(client, phone, body, sid):
    form = {"From": phone, "To": "+862159200496", "Body": body, "MessageSid": sid}
    signature = compute_signature("test-auth-token", PUBLIC + "/twilio/sms", form)
    return client.post("/twilio/sms", data=form, headers={"X-Twilio-Signature": signature})


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_arrival_by_sms_meets_on_site_once(client, runtime, seeded):
    ticket_id = _ticket(runtime)
    [offer] = _offers(runtime, ticket_id)
    phone = _agency(runtime, offer).contact_phone
    _sms_reply(client, phone, f"{offer.code} 接", "SM1")

    with time_machine.travel(MONDAY_MORNING + timedelta(minutes=40), tick=False):
        first = _sms_reply(client, phone, f"{offer.code} 到", "SM2")
        second = _sms_reply(client, phone, f"{offer.code} 到达", "SM3")

    assert "已登记到达现场".encode() in first.data
    assert "无需重复".encode() in second.data
    on_site = _clocks(runtime, ticket_id)["on_site"]
    assert on_site.state == "met"
    assert on_site.met_at == MONDAY_MORNING + timedelta(minutes=40)
    assert len(_events(runtime, ticket_id, "agency_arrived")) == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_arrival_before_acceptance_refused(client, runtime, seeded):
    ticket_id = _ticket(runtime)
    [offer] = _offers(runtime, ticket_id)

    response = _sms_reply(client, _agency(runtime, offer).contact_phone, f"{offer.code} 到", "SM1")

    assert "无法登记到达".encode() in response.data
    assert _events(runtime, ticket_id, "agency_arrived") == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_arrival_by_link_after_accepting(client, runtime, seeded):
    ticket_id = _ticket(runtime)
    [offer] = _offers(runtime, ticket_id)
    token = offers.offer_token(runtime.settings.secret_key, offer.id)
    accepted = client.post(f"/offers/{token}", data={"action": "accept"}).get_data(as_text=True)

    arrived = client.post(f"/offers/{token}", data={"action": "arrive"}).get_data(as_text=True)

    assert 'value="arrive"' in accepted, "the page offers the arrival button once accepted"
    assert "已登记到达现场" in arrived
    assert 'value="arrive"' not in arrived
    assert _clocks(runtime, ticket_id)["on_site"].state == "met"


def test_forged_offer_link_not_found(client, runtime, seeded):
    assert client.get("/offers/123").status_code == 404
    assert client.get("/offers/" + offers.offer_token("another-secret-key-123", 1)).status_code == 404


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_no_agency_left_alerts_supervisor(runtime, seeded):
    ticket_id = _ticket(runtime, town="310118104")
    [offer] = _offers(runtime, ticket_id)

    offers.answer_offer(runtime, offer.id, False, "agency:1", "无空车", MONDAY_MORNING)
    offers.dispatch_ticket(runtime, ticket_id, MONDAY_MORNING)

    [escalated] = _events(runtime, ticket_id, "dispatch_escalated")
    assert len(_offers(runtime, ticket_id)) == 1
    assert escalated.data["skipped"], "each dispatch target passed over is listed"
    assert all("——" in reason for reason in escalated.data["skipped"])
    assert "各派单目标：" in escalated.reason
    with runtime.transaction() as session:
        alerts = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "supervisor")).all()
    assert len(alerts) == 1
    assert alerts[0].status == "sent"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_capacity_respected(runtime, seeded):
    with runtime.transaction() as session:
        home = session.exec(select(Agency).where(Agency.kind == "funeral_home")).one()
        home.capacity = 1
        session.add(home)

    first = _ticket(runtime, town="310118104")
    second = _ticket(runtime, town="310118104")

    assert len(_offers(runtime, first)) == 1
    assert _offers(runtime, second) == []
    assert len(_events(runtime, second, "dispatch_escalated")) == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_consultation_not_dispatched(runtime, seeded):
    ticket_id = _ticket(runtime, category="consultation", needs=())

    assert _offers(runtime, ticket_id) == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_cancel_withdraws_pending_offer(client, runtime, seeded):
    ticket_id = _ticket(runtime, town="310118103")
    [offer] = _offers(runtime, ticket_id)
    with runtime.transaction() as session:
        number = session.get(Ticket, ticket_id).number
    client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "cancelled", "reason": "家属已自行联系"},
                headers={"Authorization": f"Bearer {seeded['operator']}"})

    answer = offers.answer_offer(runtime, offer.id, True, "agency:1", None, MONDAY_MORNING)

    assert not answer.ok
    assert _offers(runtime, ticket_id)[0].state == "cancelled"
    with runtime.transaction() as session:
        assert session.get(Ticket, ticket_id).status == "cancelled"
        assert session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("%accepted"))).all() == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_dispatch_is_not_first_response(runtime, seeded):
    ticket_id = _ticket(runtime)

    with runtime.transaction() as session:
        clock = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket_id)
                             .where(SlaClock.target == "first_response")).one()
        ticket = session.get(Ticket, ticket_id)
    assert ticket.status == "dispatching"
    assert clock.state == "running"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_escalated_then_dispatched_tells_supervisor(runtime, seeded):
    with runtime.transaction() as session:
        home = session.exec(select(Agency).where(Agency.kind == "funeral_home")).one()
        home.capacity = 1
        session.add(home)
    first = _ticket(runtime, town="310118104")
    second = _ticket(runtime, town="310118104")
    with runtime.transaction() as session:
        assert session.get(Ticket, second).status == "dispatching"
    [offer] = _offers(runtime, first)

    offers.answer_offer(runtime, offer.id, False, "agency:1", "车辆不足", MONDAY_MORNING)
    offers.dispatch_ticket(runtime, second, MONDAY_MORNING)

    [second_offer] = _offers(runtime, second)
    assert second_offer.state == "pending"
    with runtime.transaction() as session:
        notices = session.exec(select(OutboxMessage).where(OutboxMessage.ticket_id == second)
                               .where(OutboxMessage.channel == "supervisor")).all()
        assert "dispatch_escalated" not in session.get(Ticket, second).tags
    assert len(notices) == 2
    assert "已自动派给" in notices[1].body


@pytest.mark.parametrize("text, expected", [
    ("K7Q2MA 接", ("K7Q2MA", "accept", None)),
    ("ｋ７ｑ２ｍａ　接", ("K7Q2MA", "accept", None)),
    ("K7Q2MA接单", ("K7Q2MA", "accept", None)),
    ("接 K7Q2MA", ("K7Q2MA", "accept", None)),
    ("ACCEPT K7Q2MA", ("K7Q2MA", "accept", None)),
    ("K7Q2MA 拒 车辆不在", ("K7Q2MA", "decline", "车辆不在")),
    ("K7Q2MA 拒 明天才能到", ("K7Q2MA", "decline", "明天才能到")),
    ("K7Q2MA 2", ("K7Q2MA", "decline", None)),
    ("K7Q2MA 到", ("K7Q2MA", "arrive", None)),
    ("已到 k7q2ma", ("K7Q2MA", "arrive", None)),
    ("K7Q2MA ARRIVED", ("K7Q2MA", "arrive", None)),
    ("K7Q2MA", None),
    ("好的 接", None),
])
def test_sms_reply_forms_parsed(text, expected):
    assert offers.parse_sms_reply(text) == expected


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_operator_takeover_voids_offer(client, runtime, seeded):
    ticket_id = _ticket(runtime, town="310118103")
    [offer] = _offers(runtime, ticket_id)
    with runtime.transaction() as session:
        number = session.get(Ticket, ticket_id).number
    client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "waiting", "reason": "家属要求明天再联系"},
                headers={"Authorization": f"Bearer {seeded['operator']}"})

    answer = offers.answer_offer(runtime, offer.id, True, "agency:1", None, MONDAY_MORNING)

    assert not answer.ok
    assert _offers(runtime, ticket_id)[0].state == "cancelled"
    assert offers.stalled_ticket_ids(runtime) == []
    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        accept_clock = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket_id)
                                    .where(SlaClock.target == "dispatch_accept")).one()
    assert ticket.status == "waiting"
    assert accept_clock.state == "cancelled"
    offer = _offers(runtime, ticket_id)[0]
    with runtime.transaction() as session:
        key = f"offer:{offer.id}:cancelled"
        notice = session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).one()
    assert "已撤销" in notice.body, "the agency learns its offer is void"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_in_progress_ticket_not_redispatched(client, runtime, seeded):
    ticket_id = _ticket(runtime, town="310118103")
    with runtime.transaction() as session:
        number = session.get(Ticket, ticket_id).number
    client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "in_progress"},
                headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert offers.stalled_ticket_ids(runtime) == []
    assert _offers(runtime, ticket_id)[0].state == "cancelled"
