"""Twilio voice webhooks: signatures, one ticket per call, menu choices and call outcomes."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import replace

import pytest
from sqlmodel import func, select

from hotline import create_app
from hotline.models import Call, Offer, OutboxMessage, Ticket, TicketEvent
from hotline.queueing import InProcessQueue
from hotline.runtime import build_runtime
from hotline.telephony.signatures import compute_signature

PUBLIC = "https://hotline.example.test"
CALLER = "+8613812345678"


def _form(call_sid="CA0001", status="ringing", caller=CALLER, **extra):
    form = {"AccountSid": "AC55555555555555555555555555555555", "CallSid": call_sid, "CallStatus": status,
            "From": caller, "Caller": caller, "To": "+862159200496", "Called": "+862159200496",
            "Direction": "inbound"}
    form.update(extra)
    return form


def _post(client, path, form, token="test-auth-token", base=PUBLIC, headers=None):
    signature = compute_signature(token, base + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature, **(headers or {})})


def _count(runtime, model):
    with runtime.transaction() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def _ticket_of(runtime, call_sid):
    with runtime.transaction() as session:
        call = session.exec(select(Call).where(Call.call_sid == call_sid)).one()
        return session.get(Ticket, call.ticket_id)


def test_voice_answers_menu_and_opens_ticket(client, seeded, runtime):
    response = _post(client, "/twilio/voice", _form())

    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    root = ElementTree.fromstring(response.data)
    gather = root.find("Gather")
    assert gather.get("action") == PUBLIC + "/twilio/voice/menu"
    assert gather.find("Say").get("language") == "cmn-CN"
    ticket = _ticket_of(runtime, "CA0001")
    assert ticket.category == "callback"
    assert ticket.caller_phone == CALLER
    assert ticket.channel == "phone"
    assert ticket.source == "resident"


def test_bad_signature_forbidden_and_nothing_stored(client, seeded, runtime):
    for token in ("wrong-token",):
        response = _post(client, "/twilio/voice", _form(), token=token)
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "invalid_signature"

    unsigned = client.post("/twilio/voice", data=_form())
    assert unsigned.status_code == 403
    assert _count(runtime, Ticket) == 0
    assert _count(runtime, Call) == 0


def test_signature_over_other_url_forbidden(client, seeded, runtime):
    response = _post(client, "/twilio/voice", _form(), base="https://attacker.example.test")

    assert response.status_code == 403
    assert _count(runtime, Ticket) == 0


def test_retried_voice_webhook_changes_nothing(client, seeded, runtime):
    _post(client, "/twilio/voice", _form())
    events_before = _count(runtime, TicketEvent)

    again = _post(client, "/twilio/voice", _form())

    assert again.status_code == 200
    assert _count(runtime, Ticket) == 1
    assert _count(runtime, Call) == 1
    assert _count(runtime, TicketEvent) == events_before


def test_menu_two_files_body_transport_and_offers(client, seeded, runtime):
    _post(client, "/twilio/voice", _form())

    response = _post(client, "/twilio/voice/menu", _form(status="in-progress", Digits="2"))

    assert response.status_code == 200
    assert ElementTree.fromstring(response.data).find("Enqueue") is not None
    ticket = _ticket_of(runtime, "CA0001")
    assert ticket.category == "agency_service"
    assert ticket.needs == ["body_transport"]
    assert ticket.priority == 1
    assert ticket.status == "dispatching"
    assert _count(runtime, Offer) == 1
    with runtime.transaction() as session:
        sms = session.exec(select(OutboxMessage).where(OutboxMessage.channel == "sms")).one()
    assert sms.status == "sent"
    assert "接" in sms.body


def test_menu_retry_and_second_press_ignored(client, seeded, runtime):
    _post(client, "/twilio/voice", _form())
    _post(client, "/twilio/voice/menu", _form(status="in-progress", Digits="1"))
    events_before = _count(runtime, TicketEvent)

    _post(client, "/twilio/voice/menu", _form(status="in-progress", Digits="1"))
    _post(client, "/twilio/voice/menu", _form(status="in-progress", Digits="3"))

    assert _ticket_of(runtime, "CA0001").category == "consultation"
    assert _count(runtime, TicketEvent) == events_before


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled", "completed"])
def test_call_ended_before_choice_leaves_callback(client, seeded, runtime, status):
    _post(client, "/twilio/voice", _form())

    _post(client, "/twilio/voice/status", _form(status=status, CallDuration="3"))

    ticket = _ticket_of(runtime, "CA0001")
    assert ticket.category == "callback"
    assert "callback_needed" in ticket.tags
    assert ticket.status == "new"


def test_status_without_voice_still_leaves_ticket(client, seeded, runtime):
    _post(client, "/twilio/voice/status", _form(call_sid="CA0404", status="no-answer"))

    ticket = _ticket_of(runtime, "CA0404")
    assert "callback_needed" in ticket.tags


def test_completed_call_after_choice_no_callback(client, seeded, runtime):
    _post(client, "/twilio/voice", _form())
    _post(client, "/twilio/voice/menu", _form(status="in-progress", Digits="3"))

    _post(client, "/twilio/voice/status", _form(status="completed", CallDuration="120"))

    ticket = _ticket_of(runtime, "CA0001")
    assert ticket.category == "assisted_application"
    assert "callback_needed" not in ticket.tags
    with runtime.transaction() as session:
        assert session.exec(select(Call)).one().duration_seconds == 120


def test_second_call_joins_open_ticket(client, seeded, runtime):
    _post(client, "/twilio/voice", _form(call_sid="CA0001"))
    _post(client, "/twilio/voice", _form(call_sid="CA0002"))

    assert _count(runtime, Ticket) == 1
    assert _ticket_of(runtime, "CA0002").id == _ticket_of(runtime, "CA0001").id


def test_second_call_with_body_transport_upgrades(client, seeded, runtime):
    _post(client, "/twilio/voice", _form(call_sid="CA0001"))
    _post(client, "/twilio/voice/menu", _form(call_sid="CA0001", status="in-progress", Digits="1"))
    _post(client, "/twilio/voice", _form(call_sid="CA0002"))

    _post(client, "/twilio/voice/menu", _form(call_sid="CA0002", status="in-progress", Digits="2"))

    ticket = _ticket_of(runtime, "CA0002")
    assert ticket.category == "agency_service"
    assert ticket.priority == 1


def test_call_to_other_number_gets_empty_twiml(client, seeded, runtime):
    form = _form(To="+862159209999", Called="+862159209999")

    response = _post(client, "/twilio/voice", form)

    assert response.status_code == 200
    assert list(ElementTree.fromstring(response.data)) == []
    assert _count(runtime, Ticket) == 0


def test_proxy_hops_validate_forwarded_url(settings, seeded):
    proxied = build_runtime(replace(settings, public_base_url=None, trusted_proxy_hops=1), queue=InProcessQueue())
    app = create_app(proxied)
    client = app.test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hotline.qingpu.example", "X-Forwarded-For": "1.2.3.4"}

    response = _post(client, "/twilio/voice", _form(), base="https://hotline.qingpu.example", headers=headers)

    assert response.status_code == 200
    proxied.engine.dispose()
