"""The referral portal: referrer accounts, who may open it, the referral form, my referrals, notes for the
referrer and the status SMS."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import time_machine
from click.testing import CliRunner
from sqlmodel import select
from web_helpers import PASSWORD, csrf_token, log_in, post_form, refer
from werkzeug.security import generate_password_hash

from hotline.cli.admin import users
from hotline.dispatch import offers
from hotline.models import Agency, Offer, OutboxMessage, Referral, SlaClock, Ticket, TicketEvent, User
from hotline.referrers import notify_status_change
from hotline.sla.sweep import sweep_breaches

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
YINGPU = "310118002"
LIANTANG = "310118103"
WORKER_PHONE = "+8613700000001"
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
STAFF = ("operator", "supervisor", "admin")


def _add_referrer(runtime, username, role="community_worker", town=YINGPU, committee="复兴居委",
                  phone=WORKER_PHONE, display_name="社工 李芳") -> int:
    with runtime.transaction() as session:
        user = User(username=username, display_name=display_name, role=role, phone=phone, town_code=town,
                    committee=committee, password_hash=generate_password_hash(PASSWORD))
        session.add(user)
        session.flush()
        return user.id


@pytest.fixture
def worker(runtime, seeded) -> int:
    return _add_referrer(runtime, "worker")


@pytest.fixture
def worker_client(client, worker):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "worker").status_code == 302
    return client


def _form(client) -> tuple[str, str]:
    """The new-referral page and its form token."""
    page = client.get("/portal/referrals/new").get_data(as_text=True)
    match = FORM_TOKEN.search(page)
    assert match, "no form token on the referral form"
    return page, match.group(1)


def _valid_fields(**changes) -> dict:
    fields = {"category": "agency_service", "needs": ["body_transport"], "flags": ["solitary_elderly"],
              "resident.name": "陈阿婆家属", "resident.phone": "139 0000 2222", "resident.town": YINGPU,
              "resident.committee": "复兴居委", "resident.address": "盈浦街道复兴路 8 弄 3 号",
              "deceased.died_at": "2026-12-07T06:10", "deceased.place": "home", "note": "家属在家等候"}
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


def _submit(client, form_token, **changes):
    data = {**_valid_fields(**changes), "form_token": form_token,
            "csrf_token": csrf_token(client, "/portal/referrals/new")}
    return client.post("/portal/referrals/new", data=data)


def _file(client, **changes) -> str:
    """Send the referral form; return the new ticket's number."""
    _, token = _form(client)
    response = _submit(client, token, **changes)
    assert response.status_code == 302, response.get_data(as_text=True)
    with client.application.extensions["hotline"].transaction() as session:
        referral = session.exec(select(Referral).where(Referral.external_id.endswith(token))).one()
        return session.get(Ticket, referral.ticket_id).number


def _ticket(runtime, number) -> Ticket:
    with runtime.transaction() as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


def _ticket_count(runtime) -> int:
    with runtime.transaction() as session:
        return len(session.exec(select(Ticket.id)).all())


def _referrer_sms(runtime) -> list[OutboxMessage]:
    with runtime.transaction() as session:
        return session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key.startswith("referrer-status:"))
                            .order_by(OutboxMessage.id)).all()


def _card(page: str, number: str) -> str:
    """The list item of one referral on the my-referrals page."""
    match = re.search(rf'<li class="referral[^"]*" data-number="{number}">(.*?)</li>', page, re.S)
    assert match, f"{number} is not listed"
    return match.group(1)


def _cli(database_url, tmp_path, *args):
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_INSTANCE_DIR": str(tmp_path)}
    return CliRunner().invoke(users, ["create", *args, "--password", PASSWORD], env=env)


# --- accounts --------------------------------------------------------------------------------------


def test_cli_creates_referrer_account(runtime, seeded, database_url, tmp_path):
    result = _cli(database_url, tmp_path, "li.fang", "--role", "community_worker", "--town", "盈浦街道",
                  "--committee", "复兴居委", "--phone", "137 0000 0001", "--display-name", "社工 李芳")

    assert result.exit_code == 0, result.output
    assert result.output == "已创建社区工作者账户 li.fang。\n"
    with runtime.transaction() as session:
        user = session.exec(select(User).where(User.username == "li.fang")).one()
    assert (user.role, user.town_code, user.committee, user.phone) == (
        "community_worker", YINGPU, "复兴居委", "+8613700000001")


@pytest.mark.parametrize("args, message", [
    (["--role", "elderly_advisor", "--town", "盈浦街道", "--committee", "复兴居委"], "养老顾问账户必须给出 --phone"),
    (["--role", "elderly_advisor", "--phone", "13700000001"], "必须给出 --town --committee"),
    (["--role", "assistance_advisor", "--town", "北京", "--committee", "复兴居委", "--phone", "13700000001"],
     "街镇 北京 不存在；可用的街镇：夏阳街道、"),
    (["--role", "community_worker", "--town", "盈浦街道", "--committee", "复兴居委", "--phone", "021-59200496"],
     "021-59200496 不是手机号，不能接收短信"),
    (["--role", "community_worker", "--town", "盈浦街道", "--committee", "居" * 65, "--phone", "13700000001"],
     "超过 64 个字符"),
    (["--role", "operator", "--town", "盈浦街道"], "--town 和 --committee 只用于转介人账户，话务员账户不需要"),
])
def test_cli_rejects_incomplete_referrer(runtime, seeded, database_url, tmp_path, args, message):
    result = _cli(database_url, tmp_path, "someone", *args)

    assert result.exit_code != 0
    assert message in result.output
    with runtime.transaction() as session:
        assert session.exec(select(User).where(User.username == "someone")).first() is None


# --- who may open what -----------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referrer_lands_on_portal(client, worker):
    response = log_in(client, "worker")

    assert response.status_code == 302
    assert response.location == "/portal/referrals"
    assert client.get("/login").location == "/portal/referrals"
    assert client.get("/").location == "/portal/referrals", "the site's root sends a referrer to the portal"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_staff_still_land_on_queue(client, seeded):
    assert log_in(client, "operator").location == "/"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referrer_refused_staff_pages(worker_client, runtime, seeded):
    number = refer(worker_client, seeded["community_worker"], "API-1")
    pages = ["/queue/rows", f"/tickets/{number}", "/tickets/new", "/audit/logins", "/supervisor",
             "/supervisor/export/tickets.csv", "/supervisor/agencies/1"]

    for path in pages:
        response = worker_client.get(path)

        assert response.status_code == 403, path
        assert "无权" in response.get_data(as_text=True) or "不允许" in response.get_data(as_text=True), path


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referrer_refused_staff_forms(worker_client, runtime, seeded):
    number = refer(worker_client, seeded["community_worker"], "API-1")
    token = csrf_token(worker_client, "/portal/referrals/new")
    forms = [("/queue/claim-next", {}), (f"/tickets/{number}/claim", {}),
             (f"/tickets/{number}/status", {"to": "waiting", "reason": "稍后回电"}),
             (f"/tickets/{number}/notes", {"note": "转介人写的备注", "visible_to_referrer": "yes"}),
             ("/tickets/new", {"channel": "walk_in", "category": "consultation"}),
             ("/supervisor/agencies/1/status", {"status": "suspended", "reason": "转介人提交", "confirmed": "yes"})]

    for path, data in forms:
        assert worker_client.post(path, data={**data, "csrf_token": token}).status_code == 403, path

    ticket = _ticket(runtime, number)
    assert (ticket.status, ticket.assigned_to_id) == ("new", None)
    assert _ticket_count(runtime) == 1
    with runtime.transaction() as session:
        assert session.exec(select(TicketEvent).where(TicketEvent.kind.in_(("note", "referrer_note")))).all() == []
        assert session.get(Agency, 1).status == "approved"


@pytest.mark.parametrize("role", STAFF)
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_staff_refused_portal(client, runtime, seeded, role):
    log_in(client, role)

    assert client.get("/portal/referrals").status_code == 403
    assert client.get("/portal/referrals/new").status_code == 403
    response = client.post("/portal/referrals/new", data={**_valid_fields(), "form_token": "A" * 22,
                                                          "csrf_token": csrf_token(client, "/tickets/new")})
    assert response.status_code == 403
    assert _ticket_count(runtime) == 0


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_anonymous_sent_to_login(client, runtime, seeded):
    for path in ("/portal/referrals", "/portal/referrals/new"):
        response = client.get(path)

        assert response.status_code == 302, path
        assert response.location.startswith("/login?next="), path

    response = client.post("/portal/referrals/new", data={**_valid_fields(), "form_token": "A" * 22,
                                                          "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert _ticket_count(runtime) == 0


def test_login_from_portal_greets_referrers(client, seeded):
    portal_login = client.get(client.get("/portal/referrals").location, headers={"Accept-Language": "zh-CN"})
    staff_login = client.get("/login", headers={"Accept-Language": "zh-CN"})

    assert "民生顾问和社区工作者请使用专线分配的账号登录" in portal_login.get_data(as_text=True)
    assert "工作人员登录" not in portal_login.get_data(as_text=True)
    assert "工作人员登录" in staff_login.get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_referrer_api_and_logout_still_work(worker_client, seeded):
    assert worker_client.get("/healthz").status_code == 200
    assert refer(worker_client, seeded["community_worker"], "API-2").startswith("QP-")

    response = worker_client.post("/logout", data={"csrf_token": csrf_token(worker_client, "/portal/referrals")})

    assert response.status_code == 302
    assert worker_client.get("/portal/referrals").status_code == 302


# --- the form --------------------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_form_prefilled_from_account(worker_client):
    page, token = _form(worker_client)

    assert f'<option value="{YINGPU}" selected>盈浦街道</option>' in page
    assert 'name="resident.committee" value="复兴居委"' in page
    assert 'name="csrf_token"' in page
    assert len(token) == 22
    assert "社工 李芳（社区工作者），盈浦街道复兴居委" in page
    for label in ("遗体接运", "补贴咨询", "独居老人", "低保/特困", "代理服务", "身故一件事帮办", "家中"):
        assert label in page, label
    assert 'type="checkbox" name="needs" value="body_transport"' in page
    assert 'type="checkbox" name="flags" value="solitary_elderly"' in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_form_files_referral(worker_client, runtime, worker):
    _, token = _form(worker_client)

    response = _submit(worker_client, token)

    assert response.status_code == 302
    assert response.location == "/portal/referrals"
    with runtime.transaction() as session:
        referral = session.exec(select(Referral)).one()
        ticket = session.get(Ticket, referral.ticket_id)
    assert referral.source == "community_worker"
    assert referral.external_id == f"portal-{worker}-{token}"
    assert referral.token_id is None
    assert (referral.referrer_name, referral.referrer_phone, referral.referrer_org) == (
        "社工 李芳", WORKER_PHONE, "盈浦街道复兴居委")
    assert (ticket.source, ticket.category, ticket.needs, ticket.flags) == (
        "community_worker", "agency_service", ["body_transport"], ["solitary_elderly"])
    assert (ticket.town_code, ticket.committee, ticket.caller_phone) == (YINGPU, "复兴居委", "+8613900002222")
    assert ticket.caller_name == "陈阿婆家属"
    assert ticket.address == "盈浦街道复兴路 8 弄 3 号"
    assert ticket.note == "家属在家等候"
    assert ticket.deceased == {"died_at": "2026-12-07T06:10:00+08:00", "place": "home"}
    assert ticket.priority == 1

    listing = worker_client.get("/portal/referrals").get_data(as_text=True)
    assert f"转介已提交，工单号为 {ticket.number}" in listing


@pytest.mark.parametrize("changes, field, message", [
    ({"category": None}, "category", "请填写此项"),
    ({"category": "weather"}, "category", "请从所列选项中选择"),
    ({"needs": ["flying"]}, "needs", "请从所列选项中选择"),
    ({"flags": ["rich"]}, "flags", "请从所列选项中选择"),
    ({"resident.name": "名" * 65}, "resident.name", "最多填写 64 个字"),
    ({"resident.phone": None}, "resident.phone", "请填写此项"),
    ({"resident.phone": "12345"}, "resident.phone", "电话号码 12345 无效"),
    ({"resident.phone": "139 0000 2222 / 021-59201234"}, "resident.phone", "此处只能填写一个电话号码"),
    ({"resident.phone": "13900002222，13900003333"}, "resident.phone", "其他号码请写在“给话务员的说明”中"),
    ({"resident.town": ""}, "resident.town", "请填写此项"),
    ({"resident.town": "北京"}, "resident.town", "请从所列选项中选择"),
    ({"resident.committee": "居" * 65}, "resident.committee", "最多填写 64 个字"),
    ({"resident.address": "路" * 201}, "resident.address", "最多填写 200 个字"),
    ({"deceased.died_at": "昨天早上"}, "deceased.died_at", "请同时填写日期和时间"),
    ({"deceased.died_at": "2026-12-07T10:00"}, "deceased.died_at", "该时间比当前时间晚 10 分钟以上"),
    ({"deceased.died_at": "0001-01-01T00:00"}, "deceased.died_at", "请检查年份"),
    ({"deceased.place": "moon"}, "deceased.place", "请从所列选项中选择"),
    ({"note": "记" * 2001}, "note", "最多填写 2000 个字"),
])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_form_field_errors(worker_client, runtime, changes, field, message):
    _, token = _form(worker_client)

    response = _submit(worker_client, token, **changes)

    page = response.get_data(as_text=True)
    element = field.replace(".", "-")
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{element}-error">([^<]*)</p>', page)
    assert error, f"no error next to {field}"
    assert message in error.group(1)
    assert f'aria-describedby="{element}-error"' in page
    assert f'name="form_token" value="{token}"' in page, "the corrected form files under the same token"
    assert _ticket_count(runtime) == 0


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_form_keeps_phone_extension(worker_client, runtime):
    number = _file(worker_client, **{"resident.phone": "021-59200496 分机 8001"})

    ticket = _ticket(runtime, number)
    assert (ticket.caller_phone, ticket.caller_phone_ext) == ("+862159200496", "8001")


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_form_keeps_entries_after_error(worker_client):
    _, token = _form(worker_client)

    page = _submit(worker_client, token, **{"resident.phone": "12345"}).get_data(as_text=True)

    assert 'value="陈阿婆家属"' in page
    assert 'value="12345"' in page
    assert re.search(r'value="body_transport"\s+checked', page)
    assert re.search(r'value="agency_service" required\s+checked', page)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_double_submit_files_once(worker_client, runtime):
    _, token = _form(worker_client)

    first = _submit(worker_client, token)
    second = _submit(worker_client, token)

    assert (first.status_code, second.status_code) == (302, 302)
    assert _ticket_count(runtime) == 1
    listing = worker_client.get("/portal/referrals").get_data(as_text=True)
    assert "已提交过，工单号为 QP-20261207-0001，未重复提交" in listing


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_new_form_gets_new_token(worker_client, runtime):
    first = _file(worker_client)
    second = _file(worker_client)

    assert first != second
    assert _ticket_count(runtime) == 2


@pytest.mark.parametrize("token", ["", "short", "A" * 21 + "!", "../../etc/passwd-0123456"])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_bad_form_token_files_nothing(worker_client, runtime, token):
    response = _submit(worker_client, token)

    assert response.status_code == 400
    assert "表单已过期" in response.get_data(as_text=True)
    assert _ticket_count(runtime) == 0


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_form_needs_csrf_token(worker_client, runtime):
    _, token = _form(worker_client)

    response = worker_client.post("/portal/referrals/new", data={**_valid_fields(), "form_token": token})

    assert response.status_code == 400
    assert _ticket_count(runtime) == 0


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_another_referrer_cannot_reuse_a_token(client, runtime, worker):
    _add_referrer(runtime, "advisor", role="elderly_advisor", phone="+8613700000002", display_name="顾问 王敏")
    log_in(client, "worker")
    _, token = _form(client)
    _submit(client, token)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/portal/referrals")})

    log_in(client, "advisor")
    response = _submit(client, token, **{"resident.name": "另一位居民"})

    assert response.status_code == 302
    assert _ticket_count(runtime) == 2, "the same token under another account is another referral"
    page = client.get("/portal/referrals").get_data(as_text=True)
    assert "另一位居民" in page
    assert "陈阿婆家属" not in page


# --- my referrals ----------------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_list_shows_only_own_referrals(app, worker_client, runtime, seeded, worker):
    mine = _file(worker_client, category="consultation", needs=[], **{"resident.name": "本人转介"})
    _add_referrer(runtime, "other", phone="+8613700000003")
    other_client = app.test_client()
    log_in(other_client, "other")
    theirs = _file(other_client, **{"resident.name": "别人转介"})
    api = refer(worker_client, seeded["community_worker"], f"portal-{worker}-" + "C" * 22)

    page = worker_client.get("/portal/referrals").get_data(as_text=True)

    assert theirs not in page
    assert api not in page, "an API referral is not a portal referral, whatever its external id"
    assert page.count('class="referral ') == 1
    card = _card(page, mine)
    assert "本人转介" in card
    assert "治丧咨询" in card
    assert "已收到，等待受理" in card
    assert "2026-12-07 09:00" in card
    assert "13900002222" not in card


def test_list_status_agency_and_sla(worker_client, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        number = _file(worker_client, **{"resident.town": LIANTANG})
        ticket = _ticket(runtime, number)
        with runtime.transaction() as session:
            offer = session.exec(select(Offer).where(Offer.ticket_id == ticket.id)).one()
        card = _card(worker_client.get("/portal/referrals").get_data(as_text=True), number)
        assert "正在联系服务机构" in card
        assert "按时" in card

        assert offers.answer_offer(runtime, offer.id, True, f"agency:{offer.agency_id}", None, MONDAY_MORNING).ok
        card = _card(worker_client.get("/portal/referrals").get_data(as_text=True), number)
        assert "服务机构已接单" in card
        assert '<dd class="agency">' in card
        due_at = _ticket(runtime, number).due_at
        with runtime.transaction() as session:
            clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id)
                                  .where(SlaClock.state == "running")).all()
        due_clock = next(clock for clock in clocks if clock.due_at == due_at)

        traveller.move_to(due_clock.warn_at or due_at - timedelta(hours=2))
        card = _card(worker_client.get("/portal/referrals").get_data(as_text=True), number)
        assert "即将超时" in card

        traveller.move_to(due_at + timedelta(minutes=1))
        sweep_breaches(runtime)
        card = _card(worker_client.get("/portal/referrals").get_data(as_text=True), number)
        assert "已超时" in card


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_list_empty(worker_client):
    page = worker_client.get("/portal/referrals").get_data(as_text=True)

    assert "您还没有提交过转介" in page


# --- notes for the referrer ------------------------------------------------------------------------


def _operator(app):
    """A second browser, logged in as the operator."""
    client = app.test_client()
    assert log_in(client, "operator").status_code == 302
    return client


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_note_visible_to_referrer(app, worker_client, runtime):
    number = _file(worker_client, category="consultation", needs=[])
    operator = _operator(app)

    ticket_page = operator.get(f"/tickets/{number}").get_data(as_text=True)
    assert 'name="visible_to_referrer"' in ticket_page
    post_form(operator, f"/tickets/{number}/notes", {"note": "已与家属约好明早上门", "visible_to_referrer": "yes"})
    post_form(operator, f"/tickets/{number}/notes", {"note": "家属情绪激动，内部备注"})
    post_form(operator, f"/tickets/{number}/notes", {"note": "明早九点上门", "visible_to_referrer": "yes"})
    timeline = operator.get(f"/tickets/{number}").get_data(as_text=True)

    card = _card(worker_client.get("/portal/referrals").get_data(as_text=True), number)
    assert "明早九点上门" in card, "the latest note for the referrer shows"
    assert "已与家属约好明早上门" not in card
    assert "内部备注" not in card
    assert "给转介人的备注" in timeline
    assert "家属情绪激动，内部备注" in timeline
    with runtime.transaction() as session:
        kinds = session.exec(select(TicketEvent.kind).where(TicketEvent.kind.in_(("note", "referrer_note")))
                             .order_by(TicketEvent.id)).all()
    assert kinds == ["referrer_note", "note", "referrer_note"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_note_on_api_referral_stays_internal(client, runtime, seeded):
    number = refer(client, seeded["community_worker"], "API-1")
    log_in(client, "operator")

    assert 'name="visible_to_referrer"' not in client.get(f"/tickets/{number}").get_data(as_text=True)
    post_form(client, f"/tickets/{number}/notes", {"note": "只给内部看", "visible_to_referrer": "yes"})

    with runtime.transaction() as session:
        assert session.exec(select(TicketEvent.kind).where(TicketEvent.kind.in_(("note", "referrer_note")))).all() \
            == ["note"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_empty_note_refused(client, runtime, seeded):
    number = refer(client, seeded["community_worker"], "API-1")
    log_in(client, "operator")

    response = post_form(client, f"/tickets/{number}/notes", {"note": "   ", "visible_to_referrer": "yes"})

    assert response.status_code == 302
    assert "请先填写备注内容" in client.get(f"/tickets/{number}").get_data(as_text=True)
    with runtime.transaction() as session:
        assert session.exec(select(TicketEvent).where(TicketEvent.kind.in_(("note", "referrer_note")))).all() == []


# --- status SMS ------------------------------------------------------------------------------------


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_status_change_sends_one_sms_each(app, worker_client, runtime):
    number = _file(worker_client, category="consultation", needs=[])
    assert _referrer_sms(runtime) == [], "filing the referral sends no SMS"
    operator = _operator(app)

    post_form(operator, f"/tickets/{number}/claim")
    post_form(operator, f"/tickets/{number}/status", {"to": "waiting", "reason": "等家属回电"})
    post_form(operator, f"/tickets/{number}/status", {"to": "in_progress"})
    post_form(operator, f"/tickets/{number}/status", {"to": "resolved"})

    messages = _referrer_sms(runtime)
    assert [message.body for message in messages] == [
        f"【59200496】您转介的工单 {number}：话务员正在办理。详情请登录转介门户查看。",
        f"【59200496】您转介的工单 {number}：暂停办理，等待回复。详情请登录转介门户查看。",
        f"【59200496】您转介的工单 {number}：已办结。详情请登录转介门户查看。",
    ]
    assert {message.recipient for message in messages} == {WORKER_PHONE}
    assert {message.channel for message in messages} == {"sms"}
    assert all("13900002222" not in message.body and "陈阿婆" not in message.body for message in messages)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_status_sms_idempotent(app, worker_client, runtime):
    number = _file(worker_client, category="consultation", needs=[])
    operator = _operator(app)
    post_form(operator, f"/tickets/{number}/claim")

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        notify_status_change(session, ticket, "in_progress")
        notify_status_change(session, ticket, "in_progress")

    assert [message.idempotency_key for message in _referrer_sms(runtime)] == [
        f"referrer-status:{_ticket(runtime, number).id}:in_progress"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_dispatch_statuses_reach_referrer(worker_client, runtime):
    number = _file(worker_client, **{"resident.town": LIANTANG})
    with runtime.transaction() as session:
        offer = session.exec(select(Offer).where(Offer.ticket_id == _ticket(runtime, number).id)).one()

    offers.answer_offer(runtime, offer.id, True, f"agency:{offer.agency_id}", None, MONDAY_MORNING)

    bodies = [message.body for message in _referrer_sms(runtime)]
    assert bodies == [f"【59200496】您转介的工单 {number}：正在联系服务机构。详情请登录转介门户查看。",
                      f"【59200496】您转介的工单 {number}：服务机构已接单。详情请登录转介门户查看。"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_referral_gets_no_referrer_sms(client, runtime, seeded):
    number = refer(client, seeded["community_worker"], "API-1",
                   referrer={"name": "社工", "phone": "13700000009", "org": "复兴居委"})
    log_in(client, "operator")

    post_form(client, f"/tickets/{number}/claim")

    assert _ticket(runtime, number).status == "in_progress"
    assert _referrer_sms(runtime) == []
