"""Vetting status changes from the supervisor dashboard: the form in each agency row, the confirmation, the
change itself with its withdrawn offers, rejected changes, and the agency page with its status history.

Who may send the form is tested with the other dashboard pages in test_web_dashboard.py."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
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
from web_helpers import csrf_token, log_in

from hotline.dispatch import offers, withdrawals
from hotline.models import Agency, AgencyStatusChange, OutboxMessage, Ticket, TicketEvent, User

CHANGE_TIME = MONDAY_MORNING + timedelta(minutes=5)
REASON = "家属投诉收费不透明，经核实属实"


@pytest.fixture
def supervisor(client, rotation):
    with time_machine.travel(CHANGE_TIME, tick=False):
        assert log_in(client, "supervisor").status_code == 302
    return client


def _number(runtime, ticket_id) -> str:
    with runtime.transaction() as session:
        return session.get(Ticket, ticket_id).number


def _history(runtime, name) -> list[AgencyStatusChange]:
    agency_id = agency_named(runtime, name).id
    with runtime.transaction() as session:
        return session.exec(select(AgencyStatusChange).where(AgencyStatusChange.agency_id == agency_id)
                            .order_by(AgencyStatusChange.id)).all()


def _set_status_directly(runtime, name, status, reason="核查"):
    with time_machine.travel(MONDAY_MORNING + timedelta(minutes=1), tick=False), runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == name)).one()
        withdrawals.change_agency_status(session, runtime, agency, status, reason, "test", None,
                                         MONDAY_MORNING + timedelta(minutes=1))


def _send(client, runtime, name, status, reason=REASON, confirmed=True, from_status=None, **extra):
    """Send the status form of agency `name` as the dashboard row does, with the session's CSRF token."""
    agency = agency_named(runtime, name)
    data = {"status": status, "reason": reason, "from_status": from_status or agency.status, "back": "dashboard",
            **extra}
    if confirmed:
        data["confirmed"] = "yes"
    with time_machine.travel(CHANGE_TIME, tick=False):
        data["csrf_token"] = csrf_token(client, "/supervisor")
        return client.post(f"/supervisor/agencies/{agency.id}/status", data=data)


def _flashes(page: str) -> list[str]:
    return re.findall(r'<p class="flash flash-\w+" role="status">([^<]*)</p>', page)


def _unchanged(runtime, ticket_id, name=FUSHUN, status="approved", history_rows=2):
    assert agency_named(runtime, name).status == status
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["pending"]
    assert len(_history(runtime, name)) == history_rows


# --- the form in the dashboard row ----------------------------------------------------------------------


@time_machine.travel(CHANGE_TIME, tick=False)
def test_row_offers_allowed_actions(supervisor, runtime):
    _set_status_directly(runtime, DIANSHANHU, "suspended")
    fushun, dianshanhu = agency_named(runtime, FUSHUN), agency_named(runtime, DIANSHANHU)

    page = supervisor.get("/supervisor").get_data(as_text=True)
    fushun_row = re.search(rf'<tr data-agency="{fushun.id}">(.*?)</tr>', page, re.S).group(1)
    suspended_row = re.search(rf'<tr data-agency="{dianshanhu.id}">(.*?)</tr>', page, re.S).group(1)

    assert re.findall(r'name="status" value="(\w+)"', fushun_row) == ["watch", "suspended", "revoked"]
    assert ">列入观察期</button>" in fushun_row
    assert ">暂停派单</button>" in fushun_row
    assert ">撤销资格</button>" in fushun_row
    assert 'name="from_status" value="approved"' in fushun_row
    assert 'maxlength="500"' in fushun_row
    assert f'href="/supervisor/agencies/{fushun.id}#history-heading">状态历史</a>' in fushun_row
    assert re.findall(r'name="status" value="(\w+)"', suspended_row) == ["approved", "watch", "revoked"]
    assert '<span class="agency-status status-suspended">已暂停</span>' in suspended_row


# --- confirmation --------------------------------------------------------------------------------------


def test_confirmation_names_agency_and_offers(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)

    response = _send(supervisor, runtime, FUSHUN, "suspended", confirmed=False)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"{FUSHUN} 将从“已准入”改为“已暂停”。" in page
    assert f"原因：{REASON}" in page
    assert "1 个待接单的派单将被撤回" in page
    assert f">{_number(runtime, ticket_id)}</a>" in page
    assert '<input type="hidden" name="confirmed" value="yes">' in page
    assert ">确认：暂停派单</button>" in page
    _unchanged(runtime, ticket_id)


def test_confirmation_of_watch_withdraws_nothing(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)

    page = _send(supervisor, runtime, FUSHUN, "watch", confirmed=False).get_data(as_text=True)

    assert "该机构照常接收派单，待接单和已接单的派单不变。" in page
    assert "将被撤回" not in page
    _unchanged(runtime, ticket_id)


# --- applying a change ---------------------------------------------------------------------------------


def test_suspend_withdraws_and_redispatches(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)
    [offer] = offers_of(runtime, ticket_id)
    number = _number(runtime, ticket_id)

    response = _send(supervisor, runtime, FUSHUN, "suspended")

    assert response.status_code == 302
    assert response.location == "/supervisor"
    with time_machine.travel(CHANGE_TIME, tick=False):
        page = supervisor.get(response.location).get_data(as_text=True)
    flashes = _flashes(page)
    assert flashes[0] == f"{FUSHUN}：已准入 → 已暂停。原因：{REASON}"
    assert flashes[1] == f"已撤回 1 个待接单的派单并短信告知该机构，工单随即重新自动派单：{number}。"
    assert len(flashes) == 2
    assert agency_named(runtime, FUSHUN).status == "suspended"
    withdrawn, second = offers_of(runtime, ticket_id)
    assert withdrawn.state == "cancelled"
    assert second.state == "pending"
    assert second.agency_id == agency_named(runtime, DIANSHANHU).id


def test_suspend_records_event_sms_and_history(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)
    [offer] = offers_of(runtime, ticket_id)

    _send(supervisor, runtime, FUSHUN, "suspended")

    with runtime.transaction() as session:
        supervisor_id = session.exec(select(User.id).where(User.username == "supervisor")).one()
        [event] = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)
                               .where(TicketEvent.kind == "offer_cancelled")).all()
        sms = session.exec(select(OutboxMessage)
                           .where(OutboxMessage.idempotency_key == f"offer:{offer.id}:withdrawn")).one()
    assert event.actor == f"user:{supervisor_id}"
    assert event.from_value == FUSHUN
    assert event.reason == "机构已被暂停派单，撤回派单并改派其他机构"
    assert sms.recipient == FUSHUN_PHONE
    assert "已撤回" in sms.body
    change = _history(runtime, FUSHUN)[-1]
    assert (change.from_status, change.to_status, change.reason) == ("approved", "suspended", REASON)
    assert (change.actor, change.user_id) == (f"user:{supervisor_id}", supervisor_id)
    assert change.at == CHANGE_TIME


def test_suspend_lists_accepted_offers(supervisor, runtime):
    accepted_id = body_transport_ticket(runtime)
    [accepted] = offers_of(runtime, accepted_id)
    assert offers.answer_offer(runtime, accepted.id, True, "agency:x", None, MONDAY_MORNING).ok

    confirmation = _send(supervisor, runtime, FUSHUN, "suspended", confirmed=False).get_data(as_text=True)
    response = _send(supervisor, runtime, FUSHUN, "suspended")
    with time_machine.travel(CHANGE_TIME, tick=False):
        flashes = _flashes(supervisor.get(response.location).get_data(as_text=True))

    number = _number(runtime, accepted_id)
    assert "该机构没有待接单的派单，不会撤回任何派单。" in confirmation
    assert "1 个已接单、尚未办结的工单仍由该机构负责，需要人工跟进：" in confirmation
    assert f">{number}</a>" in confirmation
    assert flashes[1] == f"{FUSHUN} 没有待接单的派单，未撤回任何派单。"
    assert flashes[2] == (f"{FUSHUN} 已接单、尚未办结的工单 1 个仍由该机构负责，需要人工跟进：{number}。"
                          "如需换机构，请在工单页面撤回派单。")
    assert [offer.state for offer in offers_of(runtime, accepted_id)] == ["accepted"]


def test_approve_suspended_agency(supervisor, runtime):
    _set_status_directly(runtime, FUSHUN, "suspended")

    response = _send(supervisor, runtime, FUSHUN, "approved", reason="整改完成，复核通过")
    with time_machine.travel(CHANGE_TIME, tick=False):
        page = supervisor.get(response.location).get_data(as_text=True)

    fushun_id = agency_named(runtime, FUSHUN).id
    assert response.status_code == 302
    assert _flashes(page) == [f"{FUSHUN}：已暂停 → 已准入。原因：整改完成，复核通过"]
    assert agency_named(runtime, FUSHUN).status == "approved"
    assert re.search(rf'<tr data-agency="{fushun_id}">.*?status-approved">已准入</span>', page, re.S)


def test_return_to_agency_page(supervisor, runtime):
    _set_status_directly(runtime, FUSHUN, "suspended")

    response = _send(supervisor, runtime, FUSHUN, "watch", back="agency")

    assert response.location == f"/supervisor/agencies/{agency_named(runtime, FUSHUN).id}"
    assert agency_named(runtime, FUSHUN).status == "watch"


# --- rejected changes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("confirmed", [False, True])
def test_missing_reason_changes_nothing(supervisor, runtime, confirmed):
    ticket_id = body_transport_ticket(runtime)

    response = _send(supervisor, runtime, FUSHUN, "suspended", reason="   ", confirmed=confirmed)

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert '<p class="flash flash-error" role="alert" id="status-error">修改机构状态必须填写原因。</p>' in page
    assert "确认状态变更" not in page
    _unchanged(runtime, ticket_id)


def test_too_long_reason_changes_nothing(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)

    response = _send(supervisor, runtime, FUSHUN, "suspended", reason="长" * 501)

    assert response.status_code == 422
    assert "原因超过 500 个字符。" in response.get_data(as_text=True)
    _unchanged(runtime, ticket_id)


def test_transition_not_allowed_changes_nothing(supervisor, runtime):
    _set_status_directly(runtime, FUSHUN, "revoked")

    response = _send(supervisor, runtime, FUSHUN, "approved")

    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert f"机构 {FUSHUN} 不能从 已撤销资格 改为 已准入；可改为：—。" in page
    assert "revoked" not in re.search(r'id="status-error">([^<]*)<', page).group(1)
    assert agency_named(runtime, FUSHUN).status == "revoked"
    assert len(_history(runtime, FUSHUN)) == 3


def test_pending_agency_cannot_be_suspended(supervisor, runtime):
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == FUSHUN)).one()
        agency.status = "pending"
        session.add(agency)

    response = _send(supervisor, runtime, FUSHUN, "suspended", confirmed=False)

    assert response.status_code == 409
    assert f"机构 {FUSHUN} 不能从 待审核 改为 已暂停；可改为：已准入、已撤销资格。" in response.get_data(as_text=True)
    assert agency_named(runtime, FUSHUN).status == "pending"


def test_unknown_status_changes_nothing(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)

    response = _send(supervisor, runtime, FUSHUN, "closed")

    assert response.status_code == 422
    assert "未知的状态 &#39;closed&#39;，请使用页面上的操作按钮。" in response.get_data(as_text=True)
    _unchanged(runtime, ticket_id)


def test_change_after_another_is_conflict(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)
    _set_status_directly(runtime, FUSHUN, "watch")

    response = _send(supervisor, runtime, FUSHUN, "suspended", from_status="approved")

    page = response.get_data(as_text=True)
    assert response.status_code == 409
    assert f"机构 {FUSHUN} 的状态在处理期间已被他人修改，请刷新后重试。" in page
    assert agency_named(runtime, FUSHUN).status == "watch"
    assert [offer.state for offer in offers_of(runtime, ticket_id)] == ["pending"]
    assert len(_history(runtime, FUSHUN)) == 3


def test_rejected_change_keeps_the_reason(supervisor, runtime):
    _set_status_directly(runtime, FUSHUN, "watch")

    page = _send(supervisor, runtime, FUSHUN, "suspended", from_status="approved").get_data(as_text=True)

    assert f">{REASON}</textarea>" in page
    assert 'name="from_status" value="watch"' in page, "the form shown again carries the current status"


def test_form_without_csrf_rejected(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)
    agency_id = agency_named(runtime, FUSHUN).id
    data = {"status": "suspended", "reason": REASON, "from_status": "approved", "confirmed": "yes"}

    with time_machine.travel(CHANGE_TIME, tick=False):
        missing = supervisor.post(f"/supervisor/agencies/{agency_id}/status", data=data)
        forged = supervisor.post(f"/supervisor/agencies/{agency_id}/status", data={**data, "csrf_token": "forged"})

    assert missing.status_code == 400
    assert forged.status_code == 400
    _unchanged(runtime, ticket_id)


@time_machine.travel(CHANGE_TIME, tick=False)
def test_unknown_agency_not_found(supervisor):
    token = csrf_token(supervisor, "/supervisor")

    assert supervisor.get("/supervisor/agencies/999").status_code == 404
    response = supervisor.post("/supervisor/agencies/999/status",
                               data={"status": "suspended", "reason": REASON, "csrf_token": token})
    assert response.status_code == 404


# --- English ---------------------------------------------------------------------------------------------


def test_change_in_english(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)
    with time_machine.travel(CHANGE_TIME, tick=False):
        page = supervisor.get("/supervisor?lang=en").get_data(as_text=True)

    confirmation = _send(supervisor, runtime, FUSHUN, "suspended", confirmed=False).get_data(as_text=True)
    response = _send(supervisor, runtime, FUSHUN, "suspended")
    with time_machine.travel(CHANGE_TIME, tick=False):
        flashes = _flashes(supervisor.get(response.location).get_data(as_text=True))

    number = _number(runtime, ticket_id)
    assert ">Suspend</button>" in page
    assert ">Put on watch</button>" in page
    assert "<summary>Change status</summary>" in page
    assert f"{FUSHUN} goes from Approved to Suspended." in confirmation
    assert ("1 pending offer will be withdrawn: the agency is told by SMS and its ticket is dispatched again at "
            "once.") in confirmation
    assert ">Confirm: Suspend</button>" in confirmation
    assert flashes[0] == f"{FUSHUN}: Approved → Suspended. Reason: {REASON}"
    assert flashes[1] == (f"Withdrew 1 pending offer, told the agency by SMS and dispatched its ticket again: "
                          f"{number}.")


def test_error_in_english(supervisor, runtime):
    _set_status_directly(runtime, FUSHUN, "revoked")
    with time_machine.travel(CHANGE_TIME, tick=False):
        supervisor.get("/supervisor?lang=en")

    page = _send(supervisor, runtime, FUSHUN, "watch").get_data(as_text=True)

    assert f"Agency {FUSHUN} cannot go from Revoked to On watch; allowed: —." in page


# --- agency page and status history ----------------------------------------------------------------------


def test_agency_page_shows_history(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)
    _send(supervisor, runtime, FUSHUN, "suspended")

    with time_machine.travel(CHANGE_TIME, tick=False):
        page = supervisor.get(f"/supervisor/agencies/{agency_named(runtime, FUSHUN).id}").get_data(as_text=True)

    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td class=\"note\">([^<]*)</td>\s*"
                      r"<td>([^<]*)</td></tr>", page)
    assert "<th scope=\"col\">时间（Asia/Shanghai）</th>" in page
    assert rows[0][1:] == ("（登记）", "待审核", "新登记", "演示数据")
    assert rows[1][1:3] == ("待审核", "已准入")
    assert rows[2] == ("2026-12-07 09:05", "已准入", "已暂停", REASON, "值班主管 张强")
    assert '<span class="agency-status status-suspended" id="agency-status">已暂停</span>' in page
    assert re.findall(r'name="status" value="(\w+)"', page) == ["approved", "watch", "revoked"]
    withdrawn, redispatched = offers_of(runtime, ticket_id)
    assert redispatched.agency_id != agency_named(runtime, FUSHUN).id
    assert '<dd id="pending-offers">—</dd>' in page


def test_agency_history_reason_in_english(supervisor, runtime):
    with time_machine.travel(CHANGE_TIME, tick=False):
        page = supervisor.get(f"/supervisor/agencies/{agency_named(runtime, FUSHUN).id}?lang=en").get_data(as_text=True)

    assert '<td class="note">New registration</td>' in page
    assert "新登记" not in page


def test_agency_page_lists_pending_offers(supervisor, runtime):
    ticket_id = body_transport_ticket(runtime)

    with time_machine.travel(CHANGE_TIME, tick=False):
        page = supervisor.get(f"/supervisor/agencies/{agency_named(runtime, FUSHUN).id}").get_data(as_text=True)

    number = _number(runtime, ticket_id)
    assert f'<dd id="pending-offers"><a href="/tickets/{number}">{number}</a></dd>' in page
    assert "接单上限" in page
