"""Pending offers of an agency that leaves dispatch: a suspension, a revocation or an expired document
withdraws them, notifies the agency by SMS and dispatches each ticket again, and a late acceptance is rejected."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import time_machine
from click.testing import CliRunner
from dispatch_helpers import (
    DIANSHANHU,
    FUSHUN,
    FUSHUN_PHONE,
    MONDAY_MORNING,
    agency_named,
    body_transport_ticket,
    offers_of,
)
from sqlmodel import select

from hotline import agencies
from hotline.cli import main
from hotline.dispatch import offers, withdrawals
from hotline.models import Agency, Offer, OutboxMessage, Ticket, TicketEvent, User
from hotline.telephony.signatures import compute_signature
from workers import jobs

PUBLIC = "https://hotline.example.test"
OTHER_TOWN = "310118104"


def _agency_name(runtime, offer: Offer) -> str:
    with runtime.transaction() as session:
        return session.get(Agency, offer.agency_id).name


def _ticket_row(runtime, ticket_id) -> Ticket:
    with runtime.transaction() as session:
        return session.get(Ticket, ticket_id)


def _events(runtime, ticket_id, kind) -> list[TicketEvent]:
    with runtime.transaction() as session:
        return session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)
                            .where(TicketEvent.kind == kind).order_by(TicketEvent.id)).all()


def _message(runtime, key) -> OutboxMessage | None:
    with runtime.transaction() as session:
        return session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key == key)).first()


def _user_id(runtime, username) -> int:
    with runtime.transaction() as session:
        return session.exec(select(User.id).where(User.username == username)).one()


def _set_status(client, runtime, token, name, status, reason="投诉属实", at=MONDAY_MORNING + timedelta(minutes=5)):
    agency_id = agency_named(runtime, name).id
    with time_machine.travel(at, tick=False):
        return client.post(f"/api/v1/agencies/{agency_id}/status", json={"status": status, "reason": reason},
                           headers={"Authorization": f"Bearer {token}"})


def _sms_reply(client, phone, body, sid):
    form = {"From": phone, "To": "+862159200496", "Body": body, "MessageSid": sid}
    signature = compute_signature("test-auth-token", PUBLIC + "/twilio/sms", form)
    return client.post("/twilio/sms", data=form, headers={"X-Twilio-Signature": signature})


# --- suspension and revocation --------------------------------------------------------------------------


def test_suspension_withdraws_and_redispatches(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)
    elsewhere_id = body_transport_ticket(runtime, town=OTHER_TOWN)
    [offer] = offers_of(runtime, ticket_id)
    assert _agency_name(runtime, offer) == FUSHUN

    response = _set_status(client, runtime, rotation["supervisor"], FUSHUN, "suspended")

    assert response.status_code == 200
    body = response.get_json()
    number = _ticket_row(runtime, ticket_id).number
    assert body["status"] == "suspended"
    assert body["withdrawn_offers"] == [{"ticket": number, "attempt": 1, "code": offer.code}]
    assert body["accepted_offers"] == []
    withdrawn, second = offers_of(runtime, ticket_id)
    assert withdrawn.state == "cancelled"
    assert withdrawn.response_reason == "机构已被暂停派单"
    assert withdrawn.responded_at == MONDAY_MORNING + timedelta(minutes=5)
    assert second.state == "pending"
    assert second.attempt == 2
    assert _agency_name(runtime, second) == DIANSHANHU, "the ticket went to the next eligible agency at once"
    assert _ticket_row(runtime, ticket_id).status == "dispatching"
    [offer_home] = offers_of(runtime, elsewhere_id)
    assert offer_home.state == "pending", "another agency's offer is untouched"


def test_suspension_records_event_and_sms(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)
    [offer] = offers_of(runtime, ticket_id)

    _set_status(client, runtime, rotation["supervisor"], FUSHUN, "suspended")

    [event] = _events(runtime, ticket_id, "offer_cancelled")
    assert event.actor == f"user:{_user_id(runtime, 'supervisor')}"
    assert event.from_value == FUSHUN
    assert event.reason == "机构已被暂停派单，撤回派单并改派其他机构"
    assert event.data == {"offer_id": offer.id, "attempt": 1, "agency_status": "suspended", "expired_documents": []}
    assert len(_events(runtime, ticket_id, "offer_sent")) == 2
    sms = _message(runtime, f"offer:{offer.id}:withdrawn")
    assert sms is not None
    assert sms.recipient == FUSHUN_PHONE
    assert sms.channel == "sms"
    assert f"派单 {offer.code}" in sms.body
    assert "已撤回" in sms.body
    assert "原因：机构已被暂停派单" in sms.body
    assert sms.status == "sent"


def test_revocation_withdraws_offers(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)

    response = _set_status(client, runtime, rotation["supervisor"], FUSHUN, "revoked", reason="备案注销")

    assert response.status_code == 200
    assert len(response.get_json()["withdrawn_offers"]) == 1
    withdrawn, second = offers_of(runtime, ticket_id)
    assert withdrawn.response_reason == "机构资格已撤销"
    assert _agency_name(runtime, second) == DIANSHANHU


def test_watch_leaves_offers_open(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)
    [offer] = offers_of(runtime, ticket_id)

    response = _set_status(client, runtime, rotation["supervisor"], FUSHUN, "watch")
    answer = offers.answer_offer(runtime, offer.id, True, "agency:x", None, MONDAY_MORNING + timedelta(minutes=6))

    assert response.status_code == 200
    assert response.get_json()["withdrawn_offers"] == []
    assert _message(runtime, f"offer:{offer.id}:withdrawn") is None
    assert _events(runtime, ticket_id, "offer_cancelled") == []
    assert answer.ok, "an agency on watch keeps working"
    assert offers_of(runtime, ticket_id)[0].state == "accepted"


def test_accepted_offer_stays_and_is_listed(client, runtime, rotation):
    accepted_id = body_transport_ticket(runtime)
    pending_id = body_transport_ticket(runtime, at=MONDAY_MORNING + timedelta(minutes=1))
    [accepted] = offers_of(runtime, accepted_id)
    [pending] = offers_of(runtime, pending_id)
    assert _agency_name(runtime, pending) == FUSHUN
    assert offers.answer_offer(runtime, accepted.id, True, "agency:x", None, MONDAY_MORNING).ok

    response = _set_status(client, runtime, rotation["supervisor"], FUSHUN, "suspended")

    body = response.get_json()
    assert body["withdrawn_offers"] == [{"ticket": _ticket_row(runtime, pending_id).number, "attempt": 1,
                                         "code": pending.code}]
    assert body["accepted_offers"] == [{"ticket": _ticket_row(runtime, accepted_id).number, "attempt": 1,
                                        "code": accepted.code}]
    assert [offer.state for offer in offers_of(runtime, accepted_id)] == ["accepted"]
    assert _ticket_row(runtime, accepted_id).status == "dispatched"
    assert _ticket_row(runtime, accepted_id).agency_id == agency_named(runtime, FUSHUN).id


def test_rejected_status_change_withdraws_nothing(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)

    response = _set_status(client, runtime, rotation["supervisor"], FUSHUN, "suspended", reason="  ")

    assert response.status_code == 422
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["pending"]
    assert agency_named(runtime, FUSHUN).status == "approved"


def test_cli_suspend_reports_offers(runtime, rotation):
    accepted_id = body_transport_ticket(runtime)
    pending_id = body_transport_ticket(runtime, at=MONDAY_MORNING + timedelta(minutes=1))
    [accepted] = offers_of(runtime, accepted_id)
    [pending] = offers_of(runtime, pending_id)
    assert offers.answer_offer(runtime, accepted.id, True, "agency:x", None, MONDAY_MORNING).ok

    with time_machine.travel(MONDAY_MORNING + timedelta(minutes=5), tick=False):
        result = CliRunner().invoke(main, ["agencies", "suspend", FUSHUN, "--reason", "投诉属实", "--by", "supervisor"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("已准入 → 已暂停")
    assert lines[1].startswith("已撤回 1 个待接单的派单并短信告知该机构")
    assert f"{_ticket_row(runtime, pending_id).number}（派单码 {pending.code}）" in lines[1]
    assert f"{_ticket_row(runtime, accepted_id).number}（派单码 {accepted.code}）" in lines[2]
    assert "撤回派单" in lines[2]
    assert [offer.state for offer in offers_of(runtime, pending_id)] == ["cancelled", "pending"]


# --- acceptance by an agency out of dispatch ----------------------------------------------------------


def test_accept_after_suspension_rejected(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)
    [offer] = offers_of(runtime, ticket_id)
    _set_status(client, runtime, rotation["supervisor"], FUSHUN, "suspended")

    with time_machine.travel(MONDAY_MORNING + timedelta(minutes=6), tick=False):
        answer = offers.answer_offer(runtime, offer.id, True, "agency:x", None, MONDAY_MORNING + timedelta(minutes=6))
        by_sms = _sms_reply(client, FUSHUN_PHONE, f"{offer.code} 接", "SM1").get_data(as_text=True)
        token = offers.offer_token(runtime.settings.secret_key, offer.id)
        by_link = client.post(f"/offers/{token}", data={"action": "accept"}).get_data(as_text=True)

    assert not answer.ok
    assert answer.message == f"派单 {offer.code} 已撤回，不能接单：机构已被暂停派单。无需再处理。"
    assert answer.message in by_sms
    assert answer.message in by_link
    first, second = offers_of(runtime, ticket_id)
    assert first.state == "cancelled"
    assert second.state == "pending"
    assert _ticket_row(runtime, ticket_id).agency_id is None
    assert _message(runtime, f"offer:{offer.id}:accepted") is None
    assert _events(runtime, ticket_id, "offer_accepted") == []


def test_decline_after_withdrawal_changes_nothing(client, runtime, rotation):
    ticket_id = body_transport_ticket(runtime)
    [offer] = offers_of(runtime, ticket_id)
    _set_status(client, runtime, rotation["supervisor"], FUSHUN, "suspended")

    answer = offers.answer_offer(runtime, offer.id, False, "agency:x", "没车", MONDAY_MORNING + timedelta(minutes=6))

    assert not answer.ok
    assert "已撤销" in answer.message
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["cancelled", "pending"]


# --- expired documents --------------------------------------------------------------------------------


def test_sweep_withdraws_offer_after_expiry(runtime, rotation):
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == FUSHUN)).one()
        agency.licence_expires_on = date(2026, 12, 8)
        session.add(agency)
    evening = datetime.fromisoformat("2026-12-07T23:55:00+08:00")
    before_midnight = datetime.fromisoformat("2026-12-07T23:59:50+08:00")
    after_midnight = datetime.fromisoformat("2026-12-08T00:00:05+08:00")
    sweep_time = datetime.fromisoformat("2026-12-08T00:00:10+08:00")
    ticket_id = body_transport_ticket(runtime, at=evening)
    [offer] = offers_of(runtime, ticket_id)
    assert _agency_name(runtime, offer) == FUSHUN
    assert offer.accept_by > sweep_time, "the offer is still open when the document expires"

    with time_machine.travel(before_midnight, tick=False):
        assert jobs.sweep_offers() == 0
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["pending"]

    with time_machine.travel(after_midnight, tick=False):
        answer = offers.answer_offer(runtime, offer.id, True, "agency:x", None, after_midnight)
    assert not answer.ok
    assert answer.message == f"派单 {offer.code} 不能接单：营业执照已于 2026-12-08 到期。此派单即将撤回，无需再处理。"
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["pending"], "a rejected accept changes nothing"

    with time_machine.travel(sweep_time, tick=False):
        assert jobs.sweep_offers() == 1

    withdrawn, second = offers_of(runtime, ticket_id)
    assert withdrawn.state == "cancelled"
    assert withdrawn.response_reason == "营业执照已于 2026-12-08 到期"
    assert _agency_name(runtime, second) == DIANSHANHU
    [event] = _events(runtime, ticket_id, "offer_cancelled")
    assert event.actor == "dispatch"
    assert event.data["expired_documents"] == ["licence"]
    assert event.data["agency_status"] == "approved"
    sms = _message(runtime, f"offer:{offer.id}:withdrawn")
    assert "原因：营业执照已于 2026-12-08 到期" in sms.body
    assert agency_named(runtime, FUSHUN).status == "approved", "expiry changes no vetting status"


def test_sweep_catches_status_set_elsewhere(runtime, rotation):
    ticket_id = body_transport_ticket(runtime)
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == FUSHUN)).one()
        agency.status = "suspended"
        session.add(agency)

    with time_machine.travel(MONDAY_MORNING + timedelta(minutes=1), tick=False):
        withdrawn = withdrawals.withdraw_ineligible_offers(runtime, MONDAY_MORNING + timedelta(minutes=1))
        again = withdrawals.withdraw_ineligible_offers(runtime, MONDAY_MORNING + timedelta(minutes=1))

    assert withdrawn == 1
    assert again == 0
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["cancelled", "pending"]
    assert len(_events(runtime, ticket_id, "offer_cancelled")) == 1


# --- wording --------------------------------------------------------------------------------------------


def test_every_status_out_of_dispatch_worded():
    assert set(agencies.OUT_OF_DISPATCH_STATUSES) == set(agencies.STATUSES) - set(agencies.DISPATCHABLE_STATUSES)


@pytest.mark.parametrize(("status", "filing", "licence", "expected"), [
    ("approved", date(2027, 1, 1), None, None),
    ("watch", date(2027, 1, 1), date(2027, 1, 1), None),
    ("suspended", date(2027, 1, 1), None, "机构已被暂停派单"),
    ("revoked", None, None, "机构资格已撤销"),
    ("pending", None, None, "机构尚未通过审核"),
    ("approved", date(2026, 12, 7), None, "备案已于 2026-12-07 到期"),
    ("suspended", date(2026, 12, 1), date(2026, 12, 7),
     "机构已被暂停派单，备案已于 2026-12-01 到期，营业执照已于 2026-12-07 到期"),
])
def test_out_of_dispatch_reason(status, filing, licence, expected):
    agency = Agency(name="x", kind="agency", status=status, contact_phone="+8613900000009",
                    filing_expires_on=filing, licence_expires_on=licence)

    assert agencies.out_of_dispatch_reason(agency, date(2026, 12, 7)) == expected
