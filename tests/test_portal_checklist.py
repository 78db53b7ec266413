"""The 帮办 checklist on the portal: the referrer of an assisted application reads its items and sets their
status and note; nobody else may open it, and a finished ticket's checklist is read-only."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from web_helpers import PASSWORD, csrf_token, log_in, refer
from werkzeug.security import generate_password_hash

from hotline import checklists
from hotline.config import DEFAULT_RULES_DIR
from hotline.models import ChecklistItem, Referral, Ticket, TicketEvent, User

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
YINGPU = "310118002"
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CODES = [entry.code for entry in checklists.load_checklist(DEFAULT_RULES_DIR / "assisted_application.yaml").entries]
STAFF = ("operator", "supervisor", "admin")

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def frozen():
    with time_machine.travel(MONDAY_MORNING, tick=False):
        yield


def _add_referrer(runtime, username, phone, display_name, role="community_worker") -> int:
    with runtime.transaction() as session:
        user = User(username=username, display_name=display_name, role=role, phone=phone, town_code=YINGPU,
                    committee="复兴居委", password_hash=generate_password_hash(PASSWORD))
        session.add(user)
        session.flush()
        return user.id


@pytest.fixture
def worker(runtime, seeded) -> int:
    return _add_referrer(runtime, "li.fang", "+8613700000001", "社工 李芳")


@pytest.fixture
def worker_client(client, worker):
    assert log_in(client, "li.fang").status_code == 302
    return client


def _other_client(app, runtime, username="zhao.lei", role="community_worker"):
    """A second browser, logged in as another referrer of the same source unless `role` says otherwise."""
    _add_referrer(runtime, username, "+8613700000009", "社工 赵磊", role=role)
    other = app.test_client()
    assert log_in(other, username).status_code == 302
    return other


def _file(client, category="assisted_application") -> str:
    """Send the portal's referral form; return the new ticket's number."""
    page = client.get("/portal/referrals/new").get_data(as_text=True)
    token = FORM_TOKEN.search(page).group(1)
    response = client.post("/portal/referrals/new", data={
        "category": category, "flags": ["no_smartphone"], "resident.name": "陈阿婆家属",
        "resident.phone": "139 0000 2222", "resident.town": YINGPU, "form_token": token,
        "csrf_token": csrf_token(client, "/portal/referrals/new")})
    assert response.status_code == 302, response.get_data(as_text=True)
    with client.application.extensions["hotline"].transaction() as session:
        referral = session.exec(select(Referral).where(Referral.external_id.endswith(token))).one()
        return session.get(Ticket, referral.ticket_id).number


def _page(client, number):
    return client.get(f"/portal/referrals/{number}/checklist")


def _stamp(page: str, code: str) -> str:
    match = re.search(rf'name="code" value="{code}">\s*<input type="hidden" name="seen" value="([0-9a-f]+)">', page)
    assert match, f"no form for item {code}"
    return match.group(1)


def _post(client, number, code, seen=None, **fields):
    """Send one item's form as the page would, with the stamp the page shows unless `seen` is given."""
    page = _page(client, number).get_data(as_text=True)
    data = {"code": code, "seen": seen if seen is not None else _stamp(page, code),
            "csrf_token": csrf_token(client, "/portal/referrals"), **fields}
    return client.post(f"/portal/referrals/{number}/checklist", data=data)


def _item(runtime, number, code) -> ChecklistItem:
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return session.exec(select(ChecklistItem).where(ChecklistItem.ticket_id == ticket.id)
                            .where(ChecklistItem.code == code)).one()


def _item_events(runtime, number) -> list[TicketEvent]:
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        return session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                            .where(TicketEvent.kind == "checklist_item").order_by(TicketEvent.id)).all()


def _card(page: str, code: str) -> str:
    item_end = r'</li>\s*(?:<li class="checklist-item|</ol>)'
    match = re.search(rf'<li class="checklist-item[^"]*" id="item-{code}"(.*?){item_end}', page, re.S)
    assert match, f"item {code} is not shown"
    return match.group(1)


def _operator_change(runtime, number, code, status, note=None):
    with runtime.transaction() as session:
        operator = session.exec(select(User).where(User.username == "operator")).one()
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        checklists.update_items(session, ticket, [checklists.ItemChange(code, status, note)], f"user:{operator.id}",
                                MONDAY_MORNING)


# --- my referrals ----------------------------------------------------------------------------------


def test_list_links_assisted_application(worker_client, runtime):
    assisted = _file(worker_client)
    consultation = _file(worker_client, category="consultation")
    _operator_change(runtime, assisted, "death_certificate", "done")

    page = worker_client.get("/portal/referrals").get_data(as_text=True)

    assert f'href="/portal/referrals/{assisted}/checklist">身故一件事帮办清单</a>' in page
    assert f"{len(CODES) - 1} 项未办（共 {len(CODES)} 项）" in page
    assert f"/portal/referrals/{consultation}/checklist" not in page


# --- reading ---------------------------------------------------------------------------------------


def test_page_shows_items(worker_client, runtime):
    number = _file(worker_client)

    response = _page(worker_client, number)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.findall(r'<li class="checklist-item[^"]*" id="item-([a-z_]+)"', page) == CODES
    card = _card(page, "death_certificate")
    assert "<h2>死亡医学证明</h2>" in card
    assert "逝者户籍地派出所" in _card(page, "household_cancellation")
    assert "<li>逝者身份证或户口簿</li>" in card
    assert '<dd class="item-status">待办</dd>' in card
    assert '<option value="done" >已完成</option>' in card
    assert 'name="csrf_token"' in card
    assert "陈阿婆家属" in page
    assert "最近修改" not in card, "an untouched item has no last change"


def test_page_shows_who_changed_an_item(worker_client, runtime):
    number = _file(worker_client)
    _operator_change(runtime, number, "household_cancellation", "in_progress", "已预约派出所")

    card = _card(_page(worker_client, number).get_data(as_text=True), "household_cancellation")

    assert '<dd class="item-status">办理中</dd>' in card
    assert '<dd class="item-note">已预约派出所</dd>' in card
    assert '<dd class="item-change">话务员 王丽 · 2026-12-07 09:00</dd>' in card
    assert '<option value="in_progress" selected>' in card


# --- changing an item ------------------------------------------------------------------------------


def test_referrer_sets_status_and_note(app, worker_client, runtime, worker):
    number = _file(worker_client)

    response = _post(worker_client, number, "death_certificate", status="done", note="家属已在社区卫生服务中心取得")

    assert response.status_code == 302
    assert response.location == f"/portal/referrals/{number}/checklist#item-death_certificate"
    item = _item(runtime, number, "death_certificate")
    assert (item.status, item.note, item.updated_by) == ("done", "家属已在社区卫生服务中心取得", f"user:{worker}")
    events = _item_events(runtime, number)
    assert [(event.actor, event.from_value, event.to_value) for event in events] == [
        (f"user:{worker}", "todo", "done")]
    page = worker_client.get(response.location).get_data(as_text=True)
    assert "帮办事项“死亡医学证明”已保存。" in page
    card = _card(page, "death_certificate")
    assert '<dd class="item-change">社工 李芳 · 2026-12-07 09:00</dd>' in card
    assert '<dd class="item-status">已完成</dd>' in card


def test_timeline_names_referrer(app, worker_client, runtime):
    number = _file(worker_client)
    _post(worker_client, number, "death_certificate", status="in_progress", note="")
    operator = app.test_client()
    log_in(operator, "operator")

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    timeline = page[page.index('id="timeline-heading"'):]
    assert re.search(r"<td>帮办事项更新</td><td>社工 李芳</td>\s*<td>死亡医学证明 · 待办 → 办理中</td>", timeline)


def test_empty_note_clears_note(worker_client, runtime):
    number = _file(worker_client)
    _post(worker_client, number, "household_cancellation", status="in_progress", note="已预约")

    response = _post(worker_client, number, "household_cancellation", status="in_progress", note="  ")

    assert response.status_code == 302
    assert _item(runtime, number, "household_cancellation").note is None
    assert len(_item_events(runtime, number)) == 2


def test_unchanged_item_records_nothing(worker_client, runtime):
    number = _file(worker_client)

    response = _post(worker_client, number, "death_certificate", status="todo", note="")

    assert response.status_code == 302
    assert _item_events(runtime, number) == []
    assert _item(runtime, number, "death_certificate").updated_by is None


@pytest.mark.parametrize("fields, field, message", [
    ({"status": "weather", "note": ""}, "status", "请从所列选项中选择。"),
    ({"status": "done", "note": "记" * 501}, "note", "内容过长：最多填写 500 个字。"),
    ({}, "status", "请选择状态或填写备注。"),
])
def test_invalid_change_shown_next_to_item(worker_client, runtime, fields, field, message):
    number = _file(worker_client)

    response = _post(worker_client, number, "death_certificate", **fields)

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    card = _card(page, "death_certificate")
    assert f'<p class="field-error" id="item-death_certificate-error" role="alert">{message}</p>' in card
    element = re.search(rf'<(select|textarea) id="{field}-death_certificate"[^>]*>', card).group(0)
    assert 'aria-invalid="true"' in element
    assert 'aria-describedby="item-death_certificate-error"' in element
    assert "field-error" not in _card(page, "household_cancellation")
    assert _item(runtime, number, "death_certificate").status == "todo"
    assert _item_events(runtime, number) == []


def test_invalid_change_keeps_entries(worker_client):
    number = _file(worker_client)

    page = _post(worker_client, number, "death_certificate", status="done", note="记" * 501).get_data(as_text=True)

    card = _card(page, "death_certificate")
    assert '<option value="done" selected>' in card
    assert "记" * 501 in card


def test_unknown_item_refused(worker_client, runtime):
    number = _file(worker_client)

    response = _post(worker_client, number, "moon_landing", seen="0" * 16, status="done")

    assert response.status_code == 422
    assert "清单上没有这一事项" in response.get_data(as_text=True)
    assert _item_events(runtime, number) == []


def test_stale_change_refused(worker_client, runtime):
    number = _file(worker_client)
    seen = _stamp(_page(worker_client, number).get_data(as_text=True), "death_certificate")
    _operator_change(runtime, number, "death_certificate", "done", "话务员已核实")

    response = _post(worker_client, number, "death_certificate", seen=seen, status="not_applicable", note="")

    page = response.get_data(as_text=True)
    assert response.status_code == 409
    card = _card(page, "death_certificate")
    assert "您打开页面后，有人修改了这一事项" in card
    assert '<option value="done" selected>' in card, "the form shows the item as it is now"
    assert '<dd class="item-note">话务员已核实</dd>' in card
    item = _item(runtime, number, "death_certificate")
    assert (item.status, item.note) == ("done", "话务员已核实")
    assert len(_item_events(runtime, number)) == 1


def test_change_needs_csrf_token(worker_client, runtime):
    number = _file(worker_client)
    seen = _stamp(_page(worker_client, number).get_data(as_text=True), "death_certificate")

    response = worker_client.post(f"/portal/referrals/{number}/checklist",
                                  data={"code": "death_certificate", "seen": seen, "status": "done"})

    assert response.status_code == 400
    assert _item_events(runtime, number) == []


# --- finished tickets ------------------------------------------------------------------------------


def _finish(client, seeded, runtime, number, status):
    if status == "resolved":
        for code in CODES:
            _operator_change(runtime, number, code, "not_applicable")
    response = client.post(f"/api/v1/tickets/{number}/transitions", json={"to": status, "reason": "家属自行办理"},
                           headers={"Authorization": f"Bearer {seeded['operator']}"})
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("status", ["resolved", "cancelled"])
def test_finished_ticket_read_only(worker_client, runtime, seeded, status):
    number = _file(worker_client)
    seen = _stamp(_page(worker_client, number).get_data(as_text=True), "death_certificate")
    _finish(worker_client, seeded, runtime, number, status)
    events_before = len(_item_events(runtime, number))

    page = _page(worker_client, number).get_data(as_text=True)
    response = worker_client.post(f"/portal/referrals/{number}/checklist", data={
        "code": "death_certificate", "seen": seen, "status": "done", "note": "",
        "csrf_token": csrf_token(worker_client, "/portal/referrals")})

    assert "该转介已结束，帮办清单只能查看" in page
    assert 'name="seen"' not in page
    assert "<select" not in page
    assert response.status_code == 409
    assert f"工单 {number} 已结束，帮办清单不能再修改。" in response.get_data(as_text=True)
    assert len(_item_events(runtime, number)) == events_before


# --- who may open it -------------------------------------------------------------------------------


def test_other_referrer_gets_not_found(app, worker_client, runtime):
    number = _file(worker_client)
    seen = _stamp(_page(worker_client, number).get_data(as_text=True), "death_certificate")
    other = _other_client(app, runtime)

    page = other.get(f"/portal/referrals/{number}/checklist")
    change = other.post(f"/portal/referrals/{number}/checklist", data={
        "code": "death_certificate", "seen": seen, "status": "done",
        "csrf_token": csrf_token(other, "/portal/referrals")})

    assert (page.status_code, change.status_code) == (404, 404)
    assert _item_events(runtime, number) == []


def test_api_referral_of_same_source_not_found(worker_client, runtime, seeded):
    number = refer(worker_client, seeded["community_worker"], "API-1", category="assisted_application")

    assert _page(worker_client, number).status_code == 404


def test_other_category_or_number_not_found(worker_client):
    consultation = _file(worker_client, category="consultation")

    assert _page(worker_client, consultation).status_code == 404
    assert _page(worker_client, "QP-20261207-9999").status_code == 404


@pytest.mark.parametrize("role", STAFF)
def test_staff_refused(app, worker_client, runtime, role):
    number = _file(worker_client)
    staff = app.test_client()
    log_in(staff, role)

    assert staff.get(f"/portal/referrals/{number}/checklist").status_code == 403
    response = staff.post(f"/portal/referrals/{number}/checklist", data={
        "code": "death_certificate", "status": "done", "csrf_token": csrf_token(staff, "/tickets/new")})
    assert response.status_code == 403
    assert _item_events(runtime, number) == []


def test_anonymous_sent_to_login(app, worker_client):
    number = _file(worker_client)
    anonymous = app.test_client()

    response = anonymous.get(f"/portal/referrals/{number}/checklist")

    assert response.status_code == 302
    assert response.location.startswith("/login?next=")
