"""Related tickets and merging a duplicate: the ticket page's list and form, the JSON endpoint, what moves,
what is copied, the agency's SMS, the refusals, and two merges of the same pair at once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlmodel import select
from web_helpers import csrf_token, log_in, post_form, refer

from hotline import merging
from hotline.dispatch import offers
from hotline.models import Agency, Call, ChecklistItem, Offer, OutboxMessage, Referral, SlaClock, Ticket, TicketEvent
from hotline.validation import InputError

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
PHONE = "13812345678"


def _ticket(runtime, number) -> Ticket:
    with runtime.transaction() as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


def _events(runtime, number, kind=None) -> list[TicketEvent]:
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        query = select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
        if kind is not None:
            query = query.where(TicketEvent.kind == kind)
        return list(session.exec(query.order_by(TicketEvent.id)).all())


def _merge_form(client, survivor, duplicate, reason="同一家属来电两次"):
    return post_form(client, f"/tickets/{survivor}/merge", {"from": duplicate, "reason": reason})


@pytest.fixture
def operator(client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "operator").status_code == 302
    return client


# --- related tickets -------------------------------------------------------------------------------


def _resolve(client, token, number):
    response = client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "resolved"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()


def test_related_lists_same_phone_and_death(operator, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING - timedelta(days=40), tick=False):
        old = refer(operator, seeded["community_worker"], "OLD")
        _resolve(operator, seeded["operator"], old)
    with time_machine.travel(MONDAY_MORNING - timedelta(days=10), tick=False):
        recent = refer(operator, seeded["community_worker"], "RECENT")
        _resolve(operator, seeded["operator"], recent)
    with time_machine.travel(MONDAY_MORNING, tick=False):
        current = refer(operator, seeded["community_worker"], "A",
                        deceased={"died_at": "2026-12-07T06:10:00+08:00", "place": "home"})
        same_phone = refer(operator, seeded["elderly_advisor"], "B")
        same_death = refer(operator, seeded["shequyun"], "C", phone="13900002222",
                           deceased={"died_at": "2026-12-06T22:10:00Z"})
        other_death = refer(operator, seeded["shequyun"], "D", phone="13900003333",
                            deceased={"died_at": "2026-12-07T06:11:00+08:00"})
        other_place = refer(operator, seeded["shequyun"], "E", phone="13900004444",
                            deceased={"died_at": "2026-12-07T06:10:00+08:00", "place": "hospital"})
        unrelated = refer(operator, seeded["shequyun"], "F", phone="13900005555")

        with runtime.transaction() as session:
            ticket = session.exec(select(Ticket).where(Ticket.number == current)).one()
            rows = {row.ticket.number: row for row in merging.related_tickets(session, ticket, MONDAY_MORNING)}
        page = operator.get(f"/tickets/{current}").get_data(as_text=True)

    assert set(rows) == {same_phone, same_death, recent}
    assert (rows[same_phone].same_phone, rows[same_phone].same_death) == (True, False)
    assert (rows[same_death].same_phone, rows[same_death].same_death) == (False, True), "same instant, other offset"
    assert rows[recent].mergeable is False, "a resolved ticket is listed but cannot be merged"
    for number in (old, other_death, other_place, unrelated):
        assert number not in page
    assert f'<tr data-related="{same_phone}">' in page
    assert "来电号码相同" in page
    assert "死亡时间相同" in page
    assert page.count('class="merge-form"') == 2, "one merge form per open related ticket"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_related_empty_says_so(operator, seeded):
    number = refer(operator, seeded["community_worker"], "A")

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    assert "相关工单" in page
    assert "没有相关工单。" in page


# --- merging through the page ----------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merge_moves_and_copies_everything(operator, runtime, seeded):
    survivor = refer(operator, seeded["community_worker"], "A", needs=["subsidy_info"])
    duplicate = refer(operator, seeded["elderly_advisor"], "B", needs=["funeral_arrangement"],
                      flags=["solitary_elderly"], deceased={"died_at": "2026-12-07T06:10:00+08:00"})
    post_form(operator, f"/tickets/{duplicate}/notes", {"note": "家属说下午再来电"})
    with runtime.transaction() as session:
        target = session.exec(select(Ticket).where(Ticket.number == duplicate)).one()
        session.add(Call(call_sid="CA-merge-1", ticket_id=target.id, from_phone="+86" + PHONE, status="completed"))
    copied_before = len(_events(runtime, duplicate))
    priority_before = _ticket(runtime, survivor).priority

    response = _merge_form(operator, survivor, duplicate)

    assert response.status_code == 302
    kept, gone = _ticket(runtime, survivor), _ticket(runtime, duplicate)
    assert gone.status == "cancelled"
    assert gone.merged_into_id == kept.id
    assert _events(runtime, duplicate, "status")[-1].reason == f"并入 {survivor}"
    with runtime.transaction() as session:
        assert session.exec(select(Referral).where(Referral.external_id == "B")).one().ticket_id == kept.id
        assert session.exec(select(Call).where(Call.call_sid == "CA-merge-1")).one().ticket_id == kept.id
        running = session.exec(select(SlaClock).where(SlaClock.ticket_id == gone.id)
                               .where(SlaClock.state.in_(("running", "paused")))).all()
    assert running == [], "the duplicate's SLA clocks stopped"
    assert gone.due_at is None
    copies = [event for event in _events(runtime, survivor)
              if (event.data or {}).get("merged_from") == duplicate]
    assert len(copies) == copied_before
    assert [event.reason for event in copies if event.kind == "note"] == ["家属说下午再来电"]
    assert {event.data["kind"] for event in copies if event.kind == "merged_event"} >= {"created", "sla_started"}
    assert kept.needs == ["subsidy_info", "funeral_arrangement"]
    assert kept.flags == ["solitary_elderly"]
    assert kept.deceased == {"died_at": "2026-12-07T06:10:00+08:00", "place": None}
    assert kept.priority == priority_before - 1, "the rules ran again on the added flag"
    assert _events(runtime, survivor, "priority")[-1].reason == f"并入 {duplicate}"
    for number in (survivor, duplicate):
        merged = _events(runtime, number, "merged")
        assert len(merged) == 1, number
        assert (merged[0].from_value, merged[0].to_value, merged[0].reason) == (duplicate, survivor, "同一家属来电两次")
        assert merged[0].data["calls"] == 1
        assert merged[0].data["referrals"] == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merged_timeline_marks_origin(operator, runtime, seeded):
    survivor = refer(operator, seeded["community_worker"], "A")
    duplicate = refer(operator, seeded["elderly_advisor"], "B")
    post_form(operator, f"/tickets/{duplicate}/notes", {"note": "来自重复工单的备注"})
    response = _merge_form(operator, survivor, duplicate)

    kept = operator.get(response.location).get_data(as_text=True)
    gone = operator.get(f"/tickets/{duplicate}").get_data(as_text=True)

    assert f"工单 {duplicate} 已并入本工单并撤销。" in kept
    assert f"备注（来自 {duplicate}）" in kept
    assert f"建单（来自 {duplicate}）" in kept
    assert "来自重复工单的备注" in kept
    assert "合并工单" in kept
    assert "已并入本工单" in kept, "the related list shows the merged ticket"
    assert kept.count('class="merge-form"') == 0
    assert f'本工单已并入：<a href="/tickets/{survivor}">{survivor}</a>' in gone
    assert "已撤销" in gone


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merge_withdraws_pending_offer_by_sms(operator, runtime, seeded):
    survivor = refer(operator, seeded["community_worker"], "A", phone="13900001111")
    duplicate = refer(operator, seeded["shequyun"], "B", category="agency_service", needs=["body_transport"],
                      town="练塘镇", phone="13900001111")
    with runtime.transaction() as session:
        target = session.exec(select(Ticket).where(Ticket.number == duplicate)).one()
        offer = session.exec(select(Offer).where(Offer.ticket_id == target.id)).one()
        agency = session.get(Agency, offer.agency_id)
        code, phone = offer.code, agency.contact_phone
    assert offer.state == "pending"

    _merge_form(operator, survivor, duplicate)

    with runtime.transaction() as session:
        withdrawn = session.exec(select(Offer).where(Offer.code == code)).one()
        messages = session.exec(select(OutboxMessage).where(OutboxMessage.recipient == phone)
                                .where(OutboxMessage.idempotency_key == f"offer:{withdrawn.id}:merged")).all()
        dispatch_clock = session.exec(select(SlaClock).where(SlaClock.ticket_id == withdrawn.ticket_id)
                                      .where(SlaClock.target == "dispatch_accept")).one()
    assert withdrawn.state == "cancelled"
    assert withdrawn.ticket_id == _ticket(runtime, duplicate).id, "offers stay on the duplicate as its history"
    assert len(messages) == 1
    assert code in messages[0].body
    assert survivor in messages[0].body
    assert "已撤回" in messages[0].body
    assert dispatch_clock.state == "cancelled"
    assert _events(runtime, survivor, "merged")[0].data["offers_withdrawn"] == 1
    answer = offers.answer_offer(runtime, withdrawn.id, True, "agency:x", None, MONDAY_MORNING)
    assert answer.ok is False, "the agency can no longer accept it"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merge_moves_or_advances_checklist(operator, runtime, seeded):
    plain = refer(operator, seeded["community_worker"], "A")
    assisted = refer(operator, seeded["elderly_advisor"], "B", category="assisted_application")
    other_assisted = refer(operator, seeded["community_worker"], "C", category="assisted_application")
    with runtime.transaction() as session:
        items = session.exec(select(ChecklistItem).join(Ticket, Ticket.id == ChecklistItem.ticket_id)
                             .where(Ticket.number == other_assisted).order_by(ChecklistItem.position)).all()
        first_code, item_count = items[0].code, len(items)
    post_form(operator, f"/tickets/{other_assisted}/checklist",
              {"code": first_code, "status": "done", "note": "已在社区事务受理中心办结"})

    _merge_form(operator, plain, assisted)
    _merge_form(operator, plain, other_assisted)

    kept = _ticket(runtime, plain)
    with runtime.transaction() as session:
        on_survivor = session.exec(select(ChecklistItem).where(ChecklistItem.ticket_id == kept.id)
                                   .order_by(ChecklistItem.position)).all()
    assert len(on_survivor) == item_count, "the first duplicate's items moved"
    assert (on_survivor[0].status, on_survivor[0].note) == ("done", "已在社区事务受理中心办结"), \
        "the second duplicate's progress reached the survivor's item"
    advanced = [event for event in _events(runtime, plain, "checklist_item")
                if (event.data or {}).get("merged_from") == other_assisted]
    assert len(advanced) == 1
    assert _events(runtime, plain, "merged")[1].data["checklist_items"] == 1


# --- refusals --------------------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merge_refusals_explained(operator, runtime, seeded):
    survivor = refer(operator, seeded["community_worker"], "A")
    duplicate = refer(operator, seeded["elderly_advisor"], "B")
    finished = refer(operator, seeded["community_worker"], "C")
    post_form(operator, f"/tickets/{finished}/status", {"to": "resolved"})
    merged = refer(operator, seeded["community_worker"], "D")
    assert _merge_form(operator, survivor, merged).status_code == 302

    cases = [
        (survivor, survivor, "同一家属", 422, "工单不能并入它自己。"),
        (survivor, duplicate, "  ", 422, "请填写合并原因。"),
        (finished, duplicate, "同一家属", 409, f"工单 {finished} 已结束，不能再并入其他工单"),
        (survivor, finished, "同一家属", 409, f"工单 {finished} 已结束；只有未结束的工单才能并入。"),
        (survivor, merged, "同一家属", 409, f"工单 {merged} 已并入 {survivor}。"),
        (merged, duplicate, "同一家属", 409, f"工单 {merged} 已并入 {survivor}，请改为并入 {survivor}。"),
        (survivor, "QP-20261207-9999", "同一家属", 422, "未找到工单 QP-20261207-9999"),
    ]
    for into, source, reason, status, message in cases:
        response = _merge_form(operator, into, source, reason)
        page = response.get_data(as_text=True)
        assert response.status_code == status, (into, source)
        assert message in page, (into, source)
        assert 'id="merge-error"' in page
    assert _ticket(runtime, duplicate).status == "new", "nothing was written"
    assert _events(runtime, survivor, "merged")[0].from_value == merged
    assert len(_events(runtime, survivor, "merged")) == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merge_refused_when_agency_accepted(operator, runtime, seeded):
    survivor = refer(operator, seeded["community_worker"], "A", phone="13900001111")
    dispatched = refer(operator, seeded["shequyun"], "B", category="agency_service", needs=["body_transport"],
                       town="练塘镇", phone="13900001111")
    with runtime.transaction() as session:
        target = session.exec(select(Ticket).where(Ticket.number == dispatched)).one()
        offer_id = session.exec(select(Offer.id).where(Offer.ticket_id == target.id)).one()
    assert offers.answer_offer(runtime, offer_id, True, "agency:x", None, MONDAY_MORNING).ok

    refused = _merge_form(operator, survivor, dispatched)
    other_way = _merge_form(operator, dispatched, survivor)

    assert refused.status_code == 409
    assert "已接单工单" in refused.get_data(as_text=True)
    assert other_way.status_code == 302, "the ticket with the agency at work may absorb the other"
    assert _ticket(runtime, survivor).merged_into_id == _ticket(runtime, dispatched).id


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_merge_form_needs_csrf_token(operator, runtime, seeded):
    survivor = refer(operator, seeded["community_worker"], "A")
    duplicate = refer(operator, seeded["elderly_advisor"], "B")

    response = operator.post(f"/tickets/{survivor}/merge", data={"from": duplicate, "reason": "重复"})

    assert response.status_code == 400
    assert _ticket(runtime, duplicate).status == "new"


def test_merge_page_needs_login(client, runtime, seeded):
    response = client.post("/tickets/QP-20261207-0001/merge", data={"csrf_token": csrf_token(client)})

    assert response.status_code == 302
    assert response.location.startswith("/login")


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_concurrent_merges_of_one_pair(app, runtime, seeded):
    setup = app.test_client()
    first = refer(setup, seeded["community_worker"], "A")
    second = refer(setup, seeded["elderly_advisor"], "B")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def merge(into: str, source: str) -> None:
        barrier.wait()
        try:
            with runtime.transaction() as session:
                survivor = merging.find_ticket(session, into, "number")
                duplicate = merging.find_ticket(session, source, "from")
                merging.merge(session, runtime, survivor, duplicate, "user:1", "重复", MONDAY_MORNING)
            outcomes.append("merged")
        except InputError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=merge, args=pair) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(outcomes) == 2
    assert outcomes.count("merged") == 1
    refusal = next(outcome for outcome in outcomes if outcome != "merged")
    assert refusal in ("already_merged", "ticket_finished", "merge_conflict")
    statuses = sorted(_ticket(runtime, number).status for number in (first, second))
    assert statuses == ["cancelled", "new"]


# --- JSON API --------------------------------------------------------------------------------------


def _api_merge(client, token, number, body):
    return client.post(f"/api/v1/tickets/{number}/merge", json=body, headers={"Authorization": f"Bearer {token}"})


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_merge(client, runtime, seeded):
    survivor = refer(client, seeded["community_worker"], "A")
    duplicate = refer(client, seeded["elderly_advisor"], "B")

    response = _api_merge(client, seeded["supervisor"], survivor, {"from": duplicate, "reason": "同一家属"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["number"] == survivor
    assert any(event["kind"] == "merged" for event in body["events"])
    assert _ticket(runtime, duplicate).status == "cancelled"
    assert _events(runtime, survivor, "merged")[0].actor.startswith("user:")


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_merge_errors_name_the_field(client, runtime, seeded):
    survivor = refer(client, seeded["community_worker"], "A")
    duplicate = refer(client, seeded["elderly_advisor"], "B")
    token = seeded["operator"]

    cases = [
        ({"reason": "重复"}, 422, "required", "from"),
        ({"from": 7, "reason": "重复"}, 422, "invalid_type", "from"),
        ({"from": " ", "reason": "重复"}, 422, "required", "from"),
        ({"from": duplicate}, 422, "required", "reason"),
        ({"from": duplicate, "reason": ""}, 422, "reason_required", "reason"),
        ({"from": duplicate, "reason": "x" * 501}, 422, "too_long", "reason"),
        ({"from": duplicate, "reason": "重复", "extra": 1}, 422, "unknown_field", "extra"),
        ({"from": survivor, "reason": "重复"}, 422, "merge_self", "from"),
        ({"from": "QP-20261207-9999", "reason": "重复"}, 404, "not_found", "from"),
    ]
    for body, status, code, field in cases:
        response = _api_merge(client, token, survivor, body)
        error = response.get_json()["error"]
        assert response.status_code == status, body
        assert (error["code"], error["field"]) == (code, field), body
        assert error["message"], body
    missing = _api_merge(client, token, "QP-20261207-9999", {"from": duplicate, "reason": "重复"})
    assert (missing.status_code, missing.get_json()["error"]["field"]) == (404, "number")
    assert _ticket(runtime, duplicate).status == "new"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_merge_conflicts_are_409(client, runtime, seeded):
    survivor = refer(client, seeded["community_worker"], "A")
    duplicate = refer(client, seeded["elderly_advisor"], "B")
    token = seeded["operator"]
    assert _api_merge(client, token, survivor, {"from": duplicate, "reason": "重复"}).status_code == 200

    again = _api_merge(client, token, survivor, {"from": duplicate, "reason": "重复"})
    backwards = _api_merge(client, token, duplicate, {"from": survivor, "reason": "重复"})

    assert (again.status_code, again.get_json()["error"]["code"]) == (409, "already_merged")
    assert again.get_json()["error"]["field"] == "from"
    assert (backwards.status_code, backwards.get_json()["error"]["field"]) == (409, "number")
    assert "Ticket" not in again.get_json()["error"]["message"], "the message is in Chinese by default"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_merge_needs_staff_token(client, runtime, seeded):
    survivor = refer(client, seeded["community_worker"], "A")
    duplicate = refer(client, seeded["elderly_advisor"], "B")

    by_source = _api_merge(client, seeded["shequyun"], survivor, {"from": duplicate, "reason": "重复"})
    anonymous = client.post(f"/api/v1/tickets/{survivor}/merge", json={"from": duplicate, "reason": "重复"})

    assert by_source.status_code == 403
    assert anonymous.status_code == 401
    assert _ticket(runtime, duplicate).status == "new"
