"""The staff pages: queue order, filters and SLA colours, claim next, the ticket page, status changes and
tickets opened by hand."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta

import pytest
import time_machine
from sqlmodel import select
from web_helpers import log_in, post_form, refer

from hotline.models import SlaClock, Ticket, TicketEvent, User
from hotline.sla.sweep import sweep_breaches

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
ROW = re.compile(r'<tr data-number="(QP-\d{8}-\d{4})"[^>]*class="sla-(\w+)"')


def _rows(html: str) -> list[tuple[str, str]]:
    return ROW.findall(html)


def _ticket(runtime, number) -> Ticket:
    with runtime.transaction() as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


@pytest.fixture
def operator(client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "operator").status_code == 302
    return client


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_queue_lists_open_tickets_in_serving_order(operator, runtime, seeded):
    consultation = refer(operator, seeded["community_worker"], "A")
    urgent = refer(operator, seeded["shequyun"], "B", category="agency_service", needs=["body_transport"],
                   town="练塘镇", phone="13900001111")
    vulnerable = refer(operator, seeded["elderly_advisor"], "C", flags=["solitary_elderly"])
    finished = refer(operator, seeded["community_worker"], "D")
    post_form(operator, f"/tickets/{finished}/status", {"to": "resolved"})

    page = operator.get("/").get_data(as_text=True)

    assert [number for number, _ in _rows(page)] == [urgent, vulnerable, consultation]
    assert "139****1111" in page
    assert "13900001111" not in page
    assert "代理服务" in page
    assert "社区云" in page
    assert "练塘镇" in page
    assert '<div class="reason">P1：需接运遗体（规则 body-transport-urgent）</div>' in page
    assert page.count('<span class="priority p-P1">P1</span>') == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_queue_filters(operator, seeded):
    lianting = refer(operator, seeded["community_worker"], "A", town="练塘镇")
    refer(operator, seeded["elderly_advisor"], "B", town="金泽镇")
    complaint = refer(operator, seeded["community_worker"], "C", category="complaint")

    by_town = operator.get("/?town=310118103").get_data(as_text=True)
    by_category = operator.get("/?category=complaint&source=community_worker").get_data(as_text=True)
    by_status = operator.get("/?status=waiting").get_data(as_text=True)
    ignored = operator.get("/?priority=P9&town=nowhere").get_data(as_text=True)

    assert [number for number, _ in _rows(by_town)] == [lianting]
    assert [number for number, _ in _rows(by_category)] == [complaint]
    assert _rows(by_status) == []
    assert len(_rows(ignored)) == 3


def test_queue_colours_sla_amber_then_red(operator, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        number = refer(operator, seeded["community_worker"], "A")
        due = _ticket(runtime, number).due_at
        with runtime.transaction() as session:
            clock = session.exec(select(SlaClock).where(SlaClock.due_at == due)).first()
            warn_at = getattr(clock, "warn_at", None) or due - timedelta(hours=2)

        assert _rows(operator.get("/queue/rows").get_data(as_text=True)) == [(number, "ok")]

        traveller.move_to(warn_at)
        assert _rows(operator.get("/queue/rows").get_data(as_text=True)) == [(number, "warning")]

        traveller.move_to(due - timedelta(seconds=1))
        assert _rows(operator.get("/queue/rows").get_data(as_text=True)) == [(number, "warning")]

        traveller.move_to(due)
        sweep_breaches(runtime)
        rows = operator.get("/queue/rows").get_data(as_text=True)
        assert _rows(rows) == [(number, "breached")]
        assert "已超时" in rows


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_queue_rows_fragment_is_only_rows(operator, seeded):
    refer(operator, seeded["community_worker"], "A")

    fragment = operator.get("/queue/rows").get_data(as_text=True)

    assert "<html" not in fragment
    assert len(_rows(fragment)) == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_claim_next_takes_the_first_unassigned_in_order(app, operator, runtime, seeded):
    consultation = refer(operator, seeded["community_worker"], "A")
    vulnerable = refer(operator, seeded["elderly_advisor"], "B", flags=["solitary_elderly"])
    supervisor = app.test_client()
    log_in(supervisor, "supervisor")

    first = post_form(operator, "/queue/claim-next")
    second = post_form(supervisor, "/queue/claim-next")
    third = post_form(operator, "/queue/claim-next")

    assert first.location == f"/tickets/{vulnerable}"
    assert second.location == f"/tickets/{consultation}"
    assert third.location == "/"
    assert "目前没有待签收的工单" in operator.get("/").get_data(as_text=True)
    assert _ticket(runtime, vulnerable).status == "in_progress"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_concurrent_claim_next_distinct(app, runtime, seeded):
    setup = app.test_client()
    for index in range(3):
        refer(setup, seeded["community_worker"], f"R{index}")
    clients = [app.test_client() for _ in range(2)]
    log_in(clients[0], "operator")
    log_in(clients[1], "supervisor")
    barrier = threading.Barrier(2)
    locations = []

    def claim(client):
        barrier.wait()
        locations.append(post_form(client, "/queue/claim-next").location)

    threads = [threading.Thread(target=claim, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(locations)) == 2
    assert all(location.startswith("/tickets/QP-") for location in locations)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_shows_everything_staff_need(operator, seeded):
    number = refer(operator, seeded["shequyun"], "A", category="agency_service", needs=["body_transport"],
                   flags=["solitary_elderly"], town="练塘镇", phone="13900001111",
                   referrer={"name": "李敏", "org": "练塘镇社区事务受理中心", "phone": "13700002222"},
                   deceased={"died_at": "2026-12-07T06:10:00+08:00", "place": "home"})
    post_form(operator, f"/tickets/{number}/claim")

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    assert "+8613900001111" in page, "staff see the full number"
    assert "李敏" in page
    assert "练塘镇社区事务受理中心" in page
    assert "+8613700002222" in page
    assert "遗体接运" in page
    assert "独居老人" in page
    assert "签收" in page
    assert "话务员 王丽" in page, "the timeline names the actor"
    assert re.search(r'<tr class="sla-\w+" title="开始 2026-12-07 09:00 \+ ', page), "clock arithmetic on hover"
    assert "按全天候计" in page, "the calendar by its label"
    assert "P1：需接运遗体（规则 body-transport-urgent）" in page, "the rule trace reads as sentences"
    assert "不符合：" in page
    assert "派单记录" in page
    assert "建单" in page
    assert "代理服务" in page
    assert "+08:00" not in page, "instants in the timeline are shown to the minute in local time"
    assert "2026-12-07 06:10 · 家中" in page, "time and place of death"
    assert "请核实" not in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_timeline_names_fields_of_changed_resend(operator, seeded):
    body = {"external_id": "R-1", "category": "consultation",
            "resident": {"name": "居民", "phone": "13812345678", "town": "金泽镇"}}
    headers = {"Authorization": f"Bearer {seeded['shequyun']}"}
    number = operator.post("/api/v1/referrals", json=body, headers=headers).get_json()["number"]
    body["resident"]["phone"] = "13912345678"
    operator.post("/api/v1/referrals", json=body, headers=headers)

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    assert "转介重发，内容有变" in page
    assert "居民电话：13912345678" in page, "the operator sees the corrected value"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_resend_changes_shown_by_label(operator, seeded):
    body = {"external_id": "R-2", "category": "consultation", "note": "上午来电",
            "resident": {"name": "居民", "phone": "13812345678", "town": "金泽镇"}}
    headers = {"Authorization": f"Bearer {seeded['shequyun']}"}
    number = operator.post("/api/v1/referrals", json=body, headers=headers).get_json()["number"]
    del body["note"]
    body["category"] = "assisted_application"
    operator.post("/api/v1/referrals", json=body, headers=headers)

    chinese = operator.get(f"/tickets/{number}").get_data(as_text=True)
    english = operator.get(f"/tickets/{number}?lang=en").get_data(as_text=True)

    assert "类别：身故一件事帮办" in chinese
    assert "备注（已删除）" in chinese
    assert "Category: Assisted application" in english
    assert "Note (removed)" in english
    assert "of working-day time" in english, "the SLA calendar by its English label"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_flags_death_after_intake(operator, seeded):
    number = refer(operator, seeded["shequyun"], "A", category="agency_service", needs=["body_transport"],
                   town="练塘镇", deceased={"died_at": "2026-12-07T09:05:00+08:00"})

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    assert "2026-12-07 09:05 · 晚于受理时间，请核实" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_unconvertible_death(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "A", town="练塘镇")
    # A time stored before intake checked the year; converting it to UTC overflows.
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        ticket.deceased = {"died_at": "0001-01-01T00:00:00+08:00", "place": None}
        session.add(ticket)

    response = operator.get(f"/tickets/{number}")

    assert response.status_code == 200
    assert "0001-01-01T00:00:00+08:00" in response.get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_offers_panel(operator, runtime, seeded):
    number = refer(operator, seeded["shequyun"], "A", category="agency_service", needs=["body_transport"],
                   town="练塘镇")

    page = operator.get(f"/tickets/{number}").get_data(as_text=True)

    offered = re.search(r"<td>([^<]+) <span class=\"code\">", page)
    assert offered is not None, "the in-process dispatch job sent an offer"
    assert "待接单" in page
    assert "剩余 15分" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_status_change_needs_a_reason_where_required(operator, runtime, seeded):
    number = refer(operator, seeded["community_worker"], "A")

    refused = post_form(operator, f"/tickets/{number}/status", {"to": "waiting", "reason": "  "})
    accepted = post_form(operator, f"/tickets/{number}/status", {"to": "waiting", "reason": "家属明早回电"})

    assert refused.status_code == 422
    assert "改为 等待回复 状态须填写原因" in refused.get_data(as_text=True)
    assert accepted.status_code == 302
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        event = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                             .where(TicketEvent.kind == "status")).one()
    assert (ticket.status, event.reason) == ("waiting", "家属明早回电")
    assert "家属明早回电" in operator.get(f"/tickets/{number}").get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_status_change_refused_by_the_status_machine(operator, seeded):
    number = refer(operator, seeded["community_worker"], "A")

    response = post_form(operator, f"/tickets/{number}/status", {"to": "closed"})

    assert response.status_code == 422
    assert "待受理" in response.get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_new_ticket_by_hand(operator, runtime, seeded):
    response = post_form(operator, "/tickets/new", {
        "channel": "walk_in", "category": "agency_service", "needs": ["body_transport", "funeral_arrangement"],
        "flags": ["low_income"], "town": "310118103", "caller_phone": "１３８ １２３４ ５６７８",
        "caller_name": "陈先生",
        "note": "家属到馆咨询",
    })

    number = response.location.rsplit("/", 1)[1]
    assert re.fullmatch(r"QP-20261207-\d{4}", number)
    ticket = _ticket(runtime, number)
    assert (ticket.channel, ticket.source, ticket.category) == ("walk_in", "resident", "agency_service")
    assert ticket.caller_phone == "+8613812345678"
    assert ticket.needs == ["body_transport", "funeral_arrangement"]
    assert ticket.flags == ["low_income"]
    assert ticket.priority == 1, "rules were applied"
    assert ticket.due_at is not None, "SLA clocks were started"
    assert "已创建" in operator.get(f"/tickets/{number}").get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_new_ticket_form_sent_twice_opens_one(operator, runtime, seeded):
    page = operator.get("/tickets/new").get_data(as_text=True)
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    form = {"channel": "walk_in", "category": "consultation", "caller_phone": "13812345678", "form_token": token}

    first = post_form(operator, "/tickets/new", form)
    second = post_form(operator, "/tickets/new", form)

    assert first.location == second.location
    with runtime.transaction() as session:
        opened = session.exec(select(Ticket).where(Ticket.channel == "walk_in")).all()
    assert len(opened) == 1
    assert "未重复建单" in operator.get(second.location).get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_new_ticket_bad_phone_kept(operator, runtime, seeded):
    response = post_form(operator, "/tickets/new", {"channel": "phone", "category": "consultation",
                                                    "caller_phone": "12345", "note": "保留这段备注"})

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "电话号码 12345 无效" in page
    assert "保留这段备注" in page
    with runtime.transaction() as session:
        assert session.exec(select(Ticket)).all() == []


@pytest.mark.parametrize("typed", ["13812345678 / 021-59201234", "13812345678，13987654321", "13812345678 13987654321"])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_new_ticket_two_phone_numbers_rejected(operator, runtime, seeded, typed):
    response = post_form(operator, "/tickets/new", {"channel": "walk_in", "category": "consultation",
                                                    "caller_phone": typed, "note": "保留这段备注"})

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "此处只能填写一个电话号码，其他号码请写在备注中。" in page
    assert f'value="{typed}"' in page
    assert "保留这段备注" in page
    with runtime.transaction() as session:
        assert session.exec(select(Ticket)).all() == []


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_new_ticket_keeps_phone_extension(operator, runtime, seeded):
    response = post_form(operator, "/tickets/new", {"channel": "phone", "category": "consultation",
                                                    "caller_phone": "021-59200496 转 8001"})

    ticket = _ticket(runtime, response.location.rsplit("/", 1)[1])
    assert (ticket.caller_phone, ticket.caller_phone_ext) == ("+862159200496", "8001")


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_language_link_keeps_query(operator):
    page = operator.get("/?status=new&lang=zh").get_data(as_text=True)

    assert 'href="/?status=new&amp;lang=en"' in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_pages_switch_to_english_and_back(operator, seeded):
    refer(operator, seeded["community_worker"], "A")

    english = operator.get("/?lang=en").get_data(as_text=True)
    kept = operator.get("/").get_data(as_text=True)
    chinese = operator.get("/?lang=zh").get_data(as_text=True)

    assert "Ticket queue" in english
    assert "Consultation" in english
    assert "Ticket queue" in kept
    assert "工单队列" in chinese
    assert "治丧咨询" in chinese


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_unknown_ticket_is_404(operator):
    assert operator.get("/tickets/QP-20261207-9999").status_code == 404


def test_error_pages_in_chinese(client):
    missing = client.get("/no-such-page")
    broken_offer = client.get("/offers/not-a-token")

    assert missing.status_code == 404
    assert "页面不存在" in missing.get_data(as_text=True)
    assert broken_offer.status_code == 404
    assert "短信" in broken_offer.get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_walk_in_form_has_every_field(operator, seeded):
    page = operator.get("/tickets/new").get_data(as_text=True)

    for field in ("channel", "category", "town", "committee", "address", "caller_phone", "caller_name", "note"):
        assert f'name="{field}"' in page, field
    assert page.count('type="checkbox" name="needs"') == 6
    assert page.count('type="checkbox" name="flags"') == 5
    assert "居委/村委" in page
    assert "新工单将由您签收" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_walk_in_ticket_claimed_with_address(operator, runtime, seeded):
    response = post_form(operator, "/tickets/new", {
        "channel": "walk_in", "category": "consultation", "needs": ["subsidy_info"],
        "flags": ["solitary_elderly", "no_smartphone"], "town": "310118103", "committee": " 复兴居委 ",
        "address": "盈浦街道复兴路 88 弄 3 号 201 室", "caller_name": "陈先生",
    })

    number = response.location.rsplit("/", 1)[1]
    ticket = _ticket(runtime, number)
    with runtime.transaction() as session:
        events = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)).all()
        first_response = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id)
                                      .where(SlaClock.target == "first_response")).one()
        operator_id = session.exec(select(User.id).where(User.username == "operator")).one()
    assert ticket.committee == "复兴居委"
    assert ticket.address == "盈浦街道复兴路 88 弄 3 号 201 室"
    assert ticket.flags == ["solitary_elderly", "no_smartphone"]
    assert ticket.assigned_to_id == operator_id, "claimed for the operator serving the visitor"
    assert ticket.status == "in_progress"
    assert [event.kind for event in events if event.kind == "claimed"] == ["claimed"]
    assert first_response.state == "met"
    page = operator.get(f"/tickets/{number}").get_data(as_text=True)
    assert "复兴居委" in page
    assert "盈浦街道复兴路 88 弄 3 号 201 室" in page
    assert "话务员 王丽" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_walk_in_long_fields_cut_to_column(operator, runtime, seeded):
    response = post_form(operator, "/tickets/new", {"channel": "walk_in", "category": "consultation",
                                                    "committee": "委" * 80, "address": "路" * 250})

    ticket = _ticket(runtime, response.location.rsplit("/", 1)[1])
    assert ticket.committee == "委" * 64
    assert ticket.address == "路" * 200


@pytest.mark.parametrize(("base_url", "secure"), [("https://hotline.example.test", True),
                                                  ("http://127.0.0.1:5000", False), (None, False)])
def test_session_cookie_secure_behind_https(runtime, seeded, base_url, secure):
    from dataclasses import replace

    from hotline import create_app

    runtime.settings = replace(runtime.settings, public_base_url=base_url)
    application = create_app(runtime)
    client = application.test_client()

    response = log_in(client, "operator")

    assert application.config["SESSION_COOKIE_SECURE"] is secure
    cookie = next(header for header in response.headers.getlist("Set-Cookie") if header.startswith("session="))
    assert ("; Secure" in cookie) is secure
