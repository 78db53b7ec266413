"""The 帮办 checklist of assisted applications: creation, item changes as events, the resolve guard, the API
per role, the ticket page and the checklist file."""

from __future__ import annotations

from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from web_helpers import log_in, post_form, refer

from hotline import checklists
from hotline.config import DEFAULT_RULES_DIR
from hotline.models import ChecklistItem, Ticket, TicketEvent, User
from hotline.rules.expressions import RuleError
from hotline.telephony.signatures import compute_signature
from hotline.tokens import create_token

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
PUBLIC = "https://hotline.example.test"
CODES = [entry.code for entry in checklists.load_checklist(DEFAULT_RULES_DIR / "assisted_application.yaml").entries]


@pytest.fixture
def tokens(runtime, seeded):
    """The seeded tokens plus one of the admin, who acts as the seeded admin user."""
    with runtime.transaction() as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
        return {**seeded, "admin": create_token(session, "admin", role="admin", user_id=admin.id)}


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _assisted(client, tokens, external_id="H1") -> str:
    return refer(client, tokens["community_worker"], external_id, category="assisted_application",
                 flags=["no_smartphone"])


def _events(runtime, number, kind):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                            .where(TicketEvent.kind == kind).order_by(TicketEvent.id)).all()


def _statuses(runtime, number) -> dict[str, str]:
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return {item.code: item.status for item in checklists.items_of(session, ticket)}


def _patch(client, token, number, *changes):
    return client.patch(f"/api/v1/tickets/{number}/checklist", json={"items": list(changes)}, headers=_auth(token))


def _resolve(client, token, number, reason=None):
    body = {"to": "resolved"} if reason is None else {"to": "resolved", "reason": reason}
    return client.post(f"/api/v1/tickets/{number}/transitions", json=body, headers=_auth(token))


# --- creation ------------------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referral_gets_checklist(client, tokens, runtime):
    number = _assisted(client, tokens)

    response = client.get(f"/api/v1/tickets/{number}/checklist", headers=_auth(tokens["operator"]))

    assert response.status_code == 200
    body = response.get_json()
    assert [item["code"] for item in body["items"]] == CODES
    assert {item["status"] for item in body["items"]} == {"todo"}
    assert body["open_items"] == len(CODES)
    first = body["items"][0]
    assert first["title"] == "死亡医学证明"
    assert first["status_label"] == "待办"
    assert "申办人身份证" in first["documents"]
    assert "社区卫生服务中心" in first["office"]
    assert first["updated_at"] is None
    created = _events(runtime, number, "checklist_created")
    assert len(created) == 1
    assert created[0].data == {"items": CODES}


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referral_response_lists_checklist_event(client, tokens):
    body = {"external_id": "H2", "category": "assisted_application",
            "resident": {"name": "居民", "phone": "13812345678", "town": "金泽镇"}}
    response = client.post("/api/v1/referrals", json=body, headers=_auth(tokens["shequyun"]))

    assert response.status_code == 201
    assert "checklist_created" in [event["kind"] for event in response.get_json()["events"]]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_other_category_has_no_checklist(client, tokens, runtime):
    number = refer(client, tokens["community_worker"], "C1", category="consultation")

    response = client.get(f"/api/v1/tickets/{number}/checklist", headers=_auth(tokens["operator"]))

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "no_checklist"
    assert response.get_json()["error"]["field"] == "number"
    assert _statuses(runtime, number) == {}


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_menu_choice_three_adds_checklist(client, tokens, runtime):
    form = {"AccountSid": "AC55555555555555555555555555555555", "CallSid": "CA0301", "CallStatus": "in-progress",
            "From": "+8613812345678", "Caller": "+8613812345678", "To": "+862159200496",
            "Called": "+862159200496", "Direction": "inbound"}
    for path, extra in (("/twilio/voice", {}), ("/twilio/voice/menu", {"Digits": "3"})):
        data = {**form, **extra}
        signature = compute_signature("test-auth-token", PUBLIC + path, data)
        assert client.post(path, data=data, headers={"X-Twilio-Signature": signature}).status_code == 200

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket)).one()
        number = ticket.number
    assert ticket.category == "assisted_application"
    assert list(_statuses(runtime, number)) == CODES
    assert len(_events(runtime, number, "checklist_created")) == 1


def test_ensure_checklist_runs_once(runtime, tokens, client):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        number = _assisted(client, tokens)

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        again = checklists.ensure_checklist(session, runtime, ticket, "test", MONDAY_MORNING)
        count = len(checklists.items_of(session, ticket))

    assert again == []
    assert count == len(CODES)


# --- changing items ------------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_patch_changes_items_with_events(client, tokens, runtime):
    number = _assisted(client, tokens)

    response = _patch(client, tokens["operator"], number,
                      {"code": "death_certificate", "status": "done", "note": "社区卫生服务中心已出具"},
                      {"code": "household_cancellation", "status": "in_progress"})

    assert response.status_code == 200, response.get_json()
    items = {item["code"]: item for item in response.get_json()["items"]}
    assert items["death_certificate"]["status"] == "done"
    assert items["death_certificate"]["note"] == "社区卫生服务中心已出具"
    assert items["death_certificate"]["updated_at"] == "2026-12-07T09:00:00+08:00"
    assert items["death_certificate"]["updated_by"].startswith("user:")
    assert items["household_cancellation"]["status"] == "in_progress"
    assert response.get_json()["open_items"] == len(CODES) - 1
    events = _events(runtime, number, "checklist_item")
    assert [(event.data["item"], event.from_value, event.to_value) for event in events] == [
        ("death_certificate", "todo", "done"), ("household_cancellation", "todo", "in_progress")]
    assert events[0].reason == "社区卫生服务中心已出具"
    assert events[0].actor == items["death_certificate"]["updated_by"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_note_change_alone_is_event(client, tokens, runtime):
    number = _assisted(client, tokens)
    _patch(client, tokens["operator"], number, {"code": "cremation", "note": "家属已预约"})

    response = _patch(client, tokens["operator"], number, {"code": "cremation", "note": ""})

    assert response.status_code == 200
    assert next(item for item in response.get_json()["items"] if item["code"] == "cremation")["note"] is None
    events = _events(runtime, number, "checklist_item")
    assert [(event.from_value, event.to_value, event.reason) for event in events] == [
        ("todo", "todo", "家属已预约"), ("todo", "todo", None)]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_unchanged_item_writes_no_event(client, tokens, runtime):
    number = _assisted(client, tokens)

    response = _patch(client, tokens["operator"], number, {"code": "cremation", "status": "todo"})

    assert response.status_code == 200
    assert _events(runtime, number, "checklist_item") == []


@pytest.mark.parametrize(("body", "field", "code"), [
    ({}, "items", "required"),
    ({"items": []}, "items", "invalid_type"),
    ({"items": [{"status": "done"}]}, "items[0].code", "required"),
    ({"items": [{"code": "no_such_item", "status": "done"}]}, "items[0].code", "invalid_value"),
    ({"items": [{"code": "cremation", "status": "finished"}]}, "items[0].status", "invalid_value"),
    ({"items": [{"code": "cremation"}]}, "items[0]", "required"),
    ({"items": [{"code": "cremation", "note": 5}]}, "items[0].note", "invalid_type"),
    ({"items": [{"code": "cremation", "note": "长" * 501}]}, "items[0].note", "too_long"),
    ({"items": [{"code": "cremation", "status": "done", "who": "me"}]}, "items[0].who", "unknown_field"),
    ({"items": [{"code": "cremation", "status": "done"}, {"code": "cremation", "status": "todo"}]},
     "items[1].code", "invalid_value"),
    ({"items": [{"code": "cremation", "status": "done"}], "extra": 1}, "extra", "unknown_field"),
])
def test_bad_patch_names_field_and_writes_nothing(client, tokens, runtime, body, field, code):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        number = _assisted(client, tokens)
        response = client.patch(f"/api/v1/tickets/{number}/checklist", json=body, headers=_auth(tokens["operator"]))

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == field
    assert error["code"] == code
    assert field in error["message"]
    assert set(_statuses(runtime, number).values()) == {"todo"}
    assert _events(runtime, number, "checklist_item") == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_cancelled_ticket_checklist_locked(client, tokens, runtime):
    number = _assisted(client, tokens)
    client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "cancelled", "reason": "家属自行办理"},
                headers=_auth(tokens["operator"]))

    response = _patch(client, tokens["operator"], number, {"code": "cremation", "status": "done"})

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "ticket_closed"
    assert _statuses(runtime, number)["cremation"] == "todo"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_unknown_ticket_is_404(client, tokens):
    response = client.get("/api/v1/tickets/QP-20261207-9999/checklist", headers=_auth(tokens["operator"]))

    assert response.status_code == 404
    assert response.get_json()["error"]["field"] == "number"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_domain_functions_take_other_actors(client, tokens, runtime):
    number = _assisted(client, tokens)

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        changes = checklists.parse_changes({"items": [{"code": "pension_stop", "status": "in_progress"}]})
        checklists.update_items(session, ticket, changes, "source:community_worker", MONDAY_MORNING)

    with runtime.transaction() as session:
        item = session.exec(select(ChecklistItem).where(ChecklistItem.code == "pension_stop")).one()
    assert item.status == "in_progress"
    assert item.updated_by == "source:community_worker"
    assert _events(runtime, number, "checklist_item")[0].actor == "source:community_worker"


# --- the resolve guard ---------------------------------------------------------------------------


def _finish_all_but(client, token, number, *left_open):
    changes = [{"code": code, "status": "done"} for code in CODES if code not in left_open]
    assert _patch(client, token, number, *changes).status_code == 200


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_resolve_with_open_items_needs_reason(client, tokens, runtime):
    number = _assisted(client, tokens)
    _finish_all_but(client, tokens["operator"], number, "household_cancellation", "pension_stop")

    response = _resolve(client, tokens["operator"], number)

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "checklist_open"
    assert error["field"] == "reason"
    assert "户口注销" in error["message"]
    assert "养老保险待遇停发及丧葬补助金、抚恤金申领" in error["message"]
    assert _events(runtime, number, "status") == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_resolve_reason_must_name_open_items(client, tokens, runtime):
    number = _assisted(client, tokens)
    _finish_all_but(client, tokens["operator"], number, "household_cancellation", "pension_stop")

    response = _resolve(client, tokens["operator"], number, "家属自行办理户口注销")

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "checklist_reason_incomplete"
    assert error["field"] == "reason"
    assert "养老保险待遇停发" in error["message"]
    assert "户口注销" not in error["message"]
    with runtime.transaction() as session:
        assert session.exec(select(Ticket.status).where(Ticket.number == number)).one() == "new"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_resolve_with_named_items(client, tokens, runtime):
    number = _assisted(client, tokens)
    _finish_all_but(client, tokens["operator"], number, "household_cancellation", "pension_stop")
    reason = "户口注销和社保停发由家属下周自行办理"

    response = _resolve(client, tokens["operator"], number, reason)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "resolved"
    assert [event.reason for event in _events(runtime, number, "status")] == [reason]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_resolve_when_every_item_closed(client, tokens):
    number = _assisted(client, tokens)
    _finish_all_but(client, tokens["operator"], number, "veteran_benefits")
    _patch(client, tokens["operator"], number, {"code": "veteran_benefits", "status": "not_applicable"})

    response = _resolve(client, tokens["operator"], number)

    assert response.status_code == 200
    assert response.get_json()["status"] == "resolved"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_cancel_ignores_open_items(client, tokens):
    number = _assisted(client, tokens)

    response = client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "cancelled", "reason": "重复工单"},
                           headers=_auth(tokens["operator"]))

    assert response.status_code == 200


def test_unnamed_items_matches_short_names():
    items = [ChecklistItem(ticket_id=1, code="a", position=1, title="户口注销", title_en="x", short_names=["户籍"],
                           office="o", documents=[]),
             ChecklistItem(ticket_id=1, code="b", position=2, title="医保个人账户结算或继承", title_en="y",
                           short_names=["医保"], office="o", documents=[])]

    assert checklists.unnamed_items(items, "户籍和医保都已告知家属") == []
    assert [item.code for item in checklists.unnamed_items(items, "医保已告知")] == ["a"]
    assert [item.code for item in checklists.unnamed_items(items, None)] == ["a", "b"]


# --- authorisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(("token_name", "expected"), [
    (None, 401), ("community_worker", 403), ("shequyun", 403),
    ("operator", 200), ("supervisor", 200), ("admin", 200),
])
def test_api_access_per_role(client, tokens, runtime, token_name, expected):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        number = _assisted(client, tokens)
        headers = _auth(tokens[token_name]) if token_name else {}
        read = client.get(f"/api/v1/tickets/{number}/checklist", headers=headers)
        write = client.patch(f"/api/v1/tickets/{number}/checklist", headers=headers,
                             json={"items": [{"code": "cremation", "status": "done"}]})

    assert read.status_code == expected
    assert write.status_code == expected
    assert _statuses(runtime, number)["cremation"] == ("done" if expected == 200 else "todo")


# --- the ticket page -----------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_changes_item(client, tokens, runtime):
    number = _assisted(client, tokens)
    assert log_in(client, "operator").status_code == 302

    page = client.get(f"/tickets/{number}").get_data(as_text=True)
    assert 'id="checklist-heading"' in page
    assert 'id="item-household_cancellation" data-status="todo"' in page
    assert "户籍地派出所" in page

    response = post_form(client, f"/tickets/{number}/checklist",
                         {"code": "household_cancellation", "status": "done", "note": "已在盈浦派出所办结"})
    assert response.status_code == 302
    page = client.get(f"/tickets/{number}").get_data(as_text=True)

    assert 'id="item-household_cancellation" data-status="done"' in page
    assert "已在盈浦派出所办结" in page
    assert "帮办事项更新" in page
    assert "户口注销 · 待办 → 已完成" in page
    assert _statuses(runtime, number)["household_cancellation"] == "done"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_reports_bad_item(client, tokens, runtime):
    number = _assisted(client, tokens)
    log_in(client, "operator")

    response = post_form(client, f"/tickets/{number}/checklist", {"code": "cremation", "status": "finished"})
    page = client.get(response.headers["Location"]).get_data(as_text=True)

    assert "flash-error" in page
    assert "finished" in page
    assert _events(runtime, number, "checklist_item") == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_resolve_names_open_items(client, tokens):
    number = _assisted(client, tokens)
    log_in(client, "operator")

    response = post_form(client, f"/tickets/{number}/status", {"to": "resolved", "reason": ""})

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="status-error"' in page
    assert "死亡医学证明" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_other_ticket_page_has_no_checklist(client, tokens):
    number = refer(client, tokens["community_worker"], "C2", category="consultation")
    log_in(client, "operator")

    page = client.get(f"/tickets/{number}").get_data(as_text=True)

    assert 'id="checklist-heading"' not in page


# --- the checklist file --------------------------------------------------------------------------


def test_shipped_file_loads():
    definition = checklists.load_checklist(DEFAULT_RULES_DIR / "assisted_application.yaml")

    assert CODES[:4] == ["death_certificate", "household_cancellation", "cremation", "basic_funeral_subsidy"]
    assert "pension_stop" in CODES
    assert all(entry.documents for entry in definition.entries)


@pytest.mark.parametrize(("text", "problem"), [
    ("items: []\n", "items must be a non-empty list"),
    ("steps: []\n", "single key 'items'"),
    ("items:\n  - code: Bad-Code\n    title: t\n    title_en: t\n    office: o\n    documents: [d]\n", "Bad-Code"),
    ("items:\n  - code: a\n    title: t\n    title_en: t\n    office: o\n    documents: []\n",
     "item a: documents must list at least one entry"),
    ("items:\n  - code: a\n    title: t\n    office: o\n    documents: [d]\n", "missing keys ['title_en']"),
    ("items:\n  - code: a\n    title: t\n    title_en: t\n    office: o\n    documents: [d]\n    due: 3\n",
     "unknown keys ['due']"),
    ("items:\n  - {code: a, title: t, title_en: t, office: o, documents: [d]}\n"
     "  - {code: a, title: u, title_en: u, office: o, documents: [d]}\n", "repeated: ['a']"),
    ("items: [\n", "cannot be read"),
])
def test_bad_file_names_problem(tmp_path, text, problem):
    path = tmp_path / "assisted_application.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(RuleError) as raised:
        checklists.load_checklist(path)

    assert str(path) in str(raised.value)
    assert problem in str(raised.value)
