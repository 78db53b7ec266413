"""The supervisor dashboard: who may open it, live tiles and watch lists, chart data by local day, and the
CSV and XLSX exports."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta

import pytest
import time_machine
from openpyxl import load_workbook
from sqlmodel import select
from web_helpers import csrf_token, log_in, post_form, refer

from hotline.clock import now
from hotline.dispatch.offers import answer_offer
from hotline.models import Agency, Offer, Ticket
from hotline.sla.sweep import sweep_breaches
from hotline.spreadsheets import Table, to_csv, to_xlsx

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
# Staff log in before every pinned instant and less than 31 days before it, because Flask rejects a session
# cookie signed after the request or longer ago than PERMANENT_SESSION_LIFETIME.
LOGIN_TIME = datetime.fromisoformat("2026-11-30T08:00:00+08:00")
NEW_PAGES = (
    "/supervisor",
    "/supervisor?days=30",
    "/supervisor/live",
    "/supervisor/charts",
    "/supervisor/charts?days=30",
    "/supervisor/export/tickets.csv",
    "/supervisor/export/tickets.xlsx",
    "/supervisor/export/charts.csv",
    "/supervisor/export/charts.xlsx?days=30",
    "/supervisor/agencies/1",
)
# The status form of agency 1 (the funeral home team). Without confirmed=yes it returns a confirmation page
# and changes nothing.
STATUS_FORM = ("/supervisor/agencies/1/status", {"status": "watch", "reason": "核查", "from_status": "approved"})
TICKET_HEADERS_ZH = ["工单号", "建单时间", "优先级", "类别", "来源", "渠道", "状态", "街镇", "居村委", "来电号码",
                     "经办人", "服务机构", "时限", "截止时间"]
TICKET_HEADERS_EN = ["Number", "Created", "Priority", "Category", "Source", "Channel", "Status", "Town", "Committee",
                     "Caller", "Assignee", "Agency", "SLA", "Due"]
CHART_SHEETS_ZH = ["每日工单量（按来源）", "每日及时率", "各时限项目及时率", "首次响应中位时长", "服务机构",
                   "各街镇工单量"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _client_as(app, username):
    client = app.test_client()
    with time_machine.travel(LOGIN_TIME, tick=False):
        assert log_in(client, username).status_code == 302
    return client


def _ticket(runtime, number) -> Ticket:
    with runtime.transaction() as session:
        return session.exec(select(Ticket).where(Ticket.number == number)).one()


def _offers(runtime, number) -> list[Offer]:
    ticket = _ticket(runtime, number)
    with runtime.transaction() as session:
        return session.exec(select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt)).all()


def _agency_name(runtime, agency_id) -> str:
    with runtime.transaction() as session:
        return session.get(Agency, agency_id).name


def _agency_status(app, agency_id) -> str:
    with app.extensions["hotline"].transaction() as session:
        return session.get(Agency, agency_id).status


def _csv_rows(response) -> list[list[str]]:
    text = response.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


# Who may open what.


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_anonymous_sent_to_login(client, seeded):
    for path in NEW_PAGES:
        response = client.get(path)

        assert response.status_code == 302, path
        assert response.location.startswith("/login?next="), path
    path, data = STATUS_FORM
    response = client.post(path, data={**data, "confirmed": "yes", "csrf_token": csrf_token(client)})
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")
    assert _agency_status(client.application, 1) == "approved"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_operator_forbidden(app, seeded):
    operator = _client_as(app, "operator")

    for path in NEW_PAGES:
        assert operator.get(path).status_code == 403, path
    path, data = STATUS_FORM
    assert post_form(operator, path, {**data, "confirmed": "yes"}).status_code == 403
    assert _agency_status(app, 1) == "approved"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_operator_gets_json_403_from_endpoints(app, seeded):
    operator = _client_as(app, "operator")

    response = operator.get("/supervisor/live", headers={"Accept": "application/json"})

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("role", ["supervisor", "admin"])
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_supervisor_and_admin_allowed(app, seeded, role):
    staff = _client_as(app, role)

    for path in NEW_PAGES:
        assert staff.get(path).status_code == 200, path
    path, data = STATUS_FORM
    assert post_form(staff, path, data).status_code == 200, "the form answers with its confirmation"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_nav_link_only_for_supervisors(app, seeded):
    operator = _client_as(app, "operator")
    supervisor = _client_as(app, "supervisor")
    link = '<a href="/supervisor">主管看板</a>'

    assert link not in operator.get("/").get_data(as_text=True)
    assert link in supervisor.get("/").get_data(as_text=True)


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_page_in_english(app, seeded):
    supervisor = _client_as(app, "supervisor")

    page = supervisor.get("/supervisor?lang=en&days=30").get_data(as_text=True)

    assert "<h1>Supervisor dashboard</h1>" in page
    assert re.search(r'href="/supervisor\?days=30"\s+aria-current="page">Last 30 days</a>', page)
    assert "2026-11-08 to 2026-12-07, days in Asia/Shanghai time" in page


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_charts_reject_other_periods(app, seeded):
    supervisor = _client_as(app, "supervisor")

    for days in ("14", "0", "seven", "-7"):
        response = supervisor.get(f"/supervisor/charts?days={days}")
        error = response.get_json()["error"]

        assert response.status_code == 400, days
        assert error["code"] == "invalid_value"
        assert error["field"] == "days"
        assert error["message"] == "参数 days 只能取 7, 30 之一。"
    assert supervisor.get("/supervisor/export/charts.csv?days=14").status_code == 400


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_unknown_export_format_not_found(app, seeded):
    supervisor = _client_as(app, "supervisor")

    assert supervisor.get("/supervisor/export/tickets.pdf").status_code == 404
    assert supervisor.get("/supervisor/export/charts.json").status_code == 404


# Live tiles and watch lists.


@pytest.fixture
def morning(app, client, runtime, seeded):
    """Four referrals at 09:00 on Monday 7 December, then the sweep at 09:25.

    consultation (P3, unassigned), body transport (P1, offered to an agency, first response due 09:15 and
    breached, acceptance warned at 09:20 and due 09:30), vulnerable (P2, claimed) and finished (resolved).
    """
    operator = _client_as(app, "operator")
    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        numbers = {
            "consultation": refer(client, seeded["community_worker"], "A"),
            "transport": refer(client, seeded["shequyun"], "B", category="agency_service",
                               needs=["body_transport"], town="练塘镇", phone="13900001111"),
            "vulnerable": refer(client, seeded["elderly_advisor"], "C", flags=["solitary_elderly"],
                                phone="13900002222"),
            "finished": refer(client, seeded["community_worker"], "D", phone="13900003333"),
        }
        post_form(operator, f"/tickets/{numbers['vulnerable']}/claim")
        post_form(operator, f"/tickets/{numbers['finished']}/status", {"to": "resolved"})
        traveller.move_to(at("2026-12-07T09:25:00+08:00"))
        sweep_breaches(runtime)
    return numbers


@time_machine.travel(at("2026-12-07T09:25:00+08:00"), tick=False)
def test_tiles_count_open_tickets(app, morning):
    supervisor = _client_as(app, "supervisor")

    live = supervisor.get("/supervisor/live").get_json()

    assert live["tiles"] == {"open": 3, "unassigned": 2, "at_risk": 1, "breached": 1, "waiting_on_agencies": 1,
                             "awaiting_acceptance": 1, "accepted_by_agency": 0}
    assert {item["code"]: item["count"] for item in live["by_priority"]} == {"P1": 1, "P2": 1, "P3": 1, "P4": 0}
    assert {item["label"]: item["count"] for item in live["by_source"]} == {
        "居民来电": 0, "养老顾问": 1, "救助顾问": 0, "社区工作者": 1, "社区云": 1}
    assert live["updated_at"] == "2026-12-07 09:25"


@time_machine.travel(at("2026-12-07T09:25:00+08:00"), tick=False)
def test_watch_lists_show_owner_and_time(app, runtime, morning):
    supervisor = _client_as(app, "supervisor")
    agency = _agency_name(runtime, _offers(runtime, morning["transport"])[0].agency_id)

    live = supervisor.get("/supervisor/live").get_json()
    breached, at_risk = live["breached"], live["at_risk"]

    assert [row["number"] for row in breached] == [morning["transport"]]
    assert breached[0]["target"] == "首次响应"
    assert breached[0]["owner_label"] == "热线"
    assert breached[0]["due"] == "2026-12-07 09:15"
    assert breached[0]["lateness"] == "已超时 10分"
    assert breached[0]["late_seconds"] == 600
    assert breached[0]["url"] == f"/tickets/{morning['transport']}"
    assert [row["number"] for row in at_risk] == [morning["transport"]]
    assert at_risk[0]["target"] == "派单接单"
    assert at_risk[0]["owner"] == "agency"
    assert at_risk[0]["owner_label"] == f"代理机构 · {agency}"
    assert at_risk[0]["lateness"] == "剩余 5分"


@time_machine.travel(at("2026-12-07T09:25:00+08:00"), tick=False)
def test_watch_lists_match_sla_api(client, app, seeded, morning):
    supervisor = _client_as(app, "supervisor")
    headers = {"Authorization": f"Bearer {seeded['supervisor']}"}

    live = supervisor.get("/supervisor/live").get_json()
    overdue = client.get("/api/v1/sla/overdue", headers=headers).get_json()["items"]
    at_risk = client.get("/api/v1/sla/at-risk", headers=headers).get_json()["items"]

    assert [row["number"] for row in live["breached"]] == [item["number"] for item in overdue]
    assert [row["number"] for row in live["at_risk"]] == [item["number"] for item in at_risk]


@time_machine.travel(at("2026-12-07T09:25:00+08:00"), tick=False)
def test_page_shows_tiles_and_red_breach(app, morning):
    supervisor = _client_as(app, "supervisor")

    page = supervisor.get("/supervisor").get_data(as_text=True)

    assert '<span class="tile-value" data-tile="open">3</span>' in page
    assert '<span class="tile-value" data-tile="breached">1</span>' in page
    assert 'class="tile tile-breached tile-alert"' in page
    assert f'<tr data-number="{morning["transport"]}" class="sla-breached">' in page
    assert f'<tr data-number="{morning["transport"]}" class="sla-warning">' in page
    assert "已超时 10分" in page
    assert 'src="/static/vendor/echarts/echarts.min.js"' in page


def test_tiles_follow_an_agency_breach(app, runtime, morning):
    supervisor = _client_as(app, "supervisor")
    agency_id = _offers(runtime, morning["transport"])[0].agency_id

    with time_machine.travel(at("2026-12-07T09:31:00+08:00"), tick=False):
        sweep_breaches(runtime)
        live = supervisor.get("/supervisor/live").get_json()
        charts = supervisor.get("/supervisor/charts").get_json()

    breaches = {row["agency_id"]: row["breaches"] for row in charts["agencies"]}
    assert live["tiles"]["at_risk"] == 0
    assert live["tiles"]["breached"] == 1
    assert breaches[agency_id] == 1
    assert sum(breaches.values()) == 1


# Chart data.


@pytest.fixture
def week(app, client, runtime, seeded):
    """Tickets over the week ending Monday 7 December, created at the edges of local days.

    Consultations are P3 with a first response due 4 working hours after intake. Claiming a ticket meets
    its first response. Two body-transport tickets on Saturday go to agencies: one accepted after
    5 minutes, one declined after 2 minutes and offered to the next agency.
    """
    operator = _client_as(app, "operator")
    numbers = {}

    def create(name, instant, **fields):
        with time_machine.travel(at(instant), tick=False):
            numbers[name] = refer(client, seeded[fields.pop("source", "community_worker")], name,
                                  phone=f"1390000{len(numbers):04d}", **fields)

    def claim(name, instant):
        with time_machine.travel(at(instant), tick=False):
            assert post_form(operator, f"/tickets/{numbers[name]}/claim").status_code == 302

    create("before-period", "2026-11-30T23:30:00+08:00")
    create("first-day", "2026-12-01T00:30:00+08:00", town="练塘镇")
    claim("first-day", "2026-12-01T08:40:00+08:00")
    create("late", "2026-12-03T09:00:00+08:00")
    claim("late", "2026-12-03T14:00:00+08:00")
    create("accepted", "2026-12-05T10:00:00+08:00", source="shequyun", category="agency_service",
           needs=["body_transport"], town="练塘镇")
    create("declined", "2026-12-05T10:00:00+08:00", source="shequyun", category="agency_service",
           needs=["body_transport"], town="练塘镇")
    with time_machine.travel(at("2026-12-05T10:02:00+08:00"), tick=False):
        answer_offer(runtime, _offers(runtime, numbers["declined"])[0].id, False, "agency:test", "车辆已派出", now())
    with time_machine.travel(at("2026-12-05T10:05:00+08:00"), tick=False):
        answer_offer(runtime, _offers(runtime, numbers["accepted"])[0].id, True, "agency:test", None, now())
    create("sunday-night", "2026-12-06T23:50:00+08:00")
    create("after-midnight", "2026-12-07T00:10:00+08:00", source="shequyun")
    create("quick", "2026-12-07T09:00:00+08:00")
    create("slower", "2026-12-07T09:00:00+08:00")
    claim("quick", "2026-12-07T09:10:00+08:00")
    claim("slower", "2026-12-07T09:30:00+08:00")
    return numbers


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_charts_count_tickets_by_local_day(app, week):
    supervisor = _client_as(app, "supervisor")

    charts = supervisor.get("/supervisor/charts").get_json()
    by_source = {series["code"]: series["counts"] for series in charts["tickets_by_source"]}

    assert charts["period"] == {"days": 7, "first_day": "2026-12-01", "last_day": "2026-12-07",
                                "timezone": "Asia/Shanghai"}
    assert charts["days"] == ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05",
                              "2026-12-06", "2026-12-07"]
    assert by_source["community_worker"] == [1, 0, 1, 0, 0, 1, 2]
    assert by_source["shequyun"] == [0, 0, 0, 0, 2, 0, 1]
    assert by_source["resident"] == [0] * 7
    assert charts["tickets_by_source"][3]["label"] == "社区工作者"


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_charts_thirty_days_reach_back(app, week):
    supervisor = _client_as(app, "supervisor")

    charts = supervisor.get("/supervisor/charts?days=30").get_json()
    community = next(series["counts"] for series in charts["tickets_by_source"]
                     if series["code"] == "community_worker")

    assert charts["period"]["first_day"] == "2026-11-08"
    assert len(charts["days"]) == 30
    assert community[charts["days"].index("2026-11-30")] == 1
    assert sum(community) == 6


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_charts_on_time_rates(app, week):
    supervisor = _client_as(app, "supervisor")

    on_time = supervisor.get("/supervisor/charts").get_json()["on_time"]
    targets = {target["code"]: target for target in on_time["targets"]}
    by_target = {target["code"]: target["rates"] for target in on_time["by_target"]}

    assert on_time["decided"] == [1, 0, 1, 0, 1, 0, 2]
    assert on_time["on_time"] == [1, 0, 0, 0, 1, 0, 2]
    assert on_time["all"] == [100.0, None, 0.0, None, 100.0, None, 100.0]
    assert by_target["first_response"] == [100.0, None, 0.0, None, None, None, 100.0]
    assert by_target["dispatch_accept"] == [None, None, None, None, 100.0, None, None]
    assert targets["first_response"] == {"code": "first_response", "label": "首次响应", "on_time": 3, "total": 4,
                                         "rate": 75.0}
    assert targets["dispatch_accept"]["rate"] == 100.0
    assert on_time["total"] == {"on_time": 4, "total": 5, "rate": 80.0}


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_charts_median_first_response(app, week):
    supervisor = _client_as(app, "supervisor")

    first_response = supervisor.get("/supervisor/charts").get_json()["first_response"]

    assert first_response["median_minutes"] == [490.0, None, 300.0, None, None, None, 20.0]
    assert first_response["answered"] == [1, 0, 1, 0, 0, 0, 2]


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_charts_agency_acceptance(app, runtime, week):
    supervisor = _client_as(app, "supervisor")
    accepted_by = _offers(runtime, week["accepted"])[0].agency_id
    declined, offered_next = _offers(runtime, week["declined"])

    agencies = {row["agency_id"]: row for row in supervisor.get("/supervisor/charts").get_json()["agencies"]}

    # Rotation offers the declined ticket to the other 练塘 agency, the one that accepted the first ticket.
    assert offered_next.agency_id == accepted_by
    assert declined.agency_id != accepted_by
    assert agencies[accepted_by]["offers"] == 2
    assert agencies[accepted_by]["accepted"] == 1
    assert agencies[accepted_by]["acceptance_rate"] == 100.0
    assert agencies[accepted_by]["median_accept_minutes"] == 5.0
    assert agencies[accepted_by]["median_accept_text"] == "5分"
    assert agencies[declined.agency_id]["offers"] == 1
    assert agencies[declined.agency_id]["declined"] == 1
    assert agencies[declined.agency_id]["acceptance_rate"] == 0.0
    assert agencies[declined.agency_id]["median_accept_minutes"] is None
    assert agencies[accepted_by]["status_label"] == "已准入"
    assert sum(row["breaches"] for row in agencies.values()) == 0


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_charts_tickets_by_town(app, week):
    supervisor = _client_as(app, "supervisor")

    towns = supervisor.get("/supervisor/charts").get_json()["towns"]

    assert towns[:2] == [{"code": "310118104", "name": "金泽镇", "count": 5},
                         {"code": "310118103", "name": "练塘镇", "count": 3}]
    assert len(towns) == 11
    assert sum(town["count"] for town in towns) == 8


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_page_lists_agencies_for_period(app, runtime, week):
    supervisor = _client_as(app, "supervisor")
    accepted_by = _offers(runtime, week["accepted"])[0].agency_id

    page = supervisor.get("/supervisor").get_data(as_text=True)

    assert f'<tr data-agency="{accepted_by}">' in page
    assert "100.0%" in page
    assert "2026-12-01 至 2026-12-07，按 Asia/Shanghai 时区划分日期" in page
    assert 'href="/supervisor/export/charts.xlsx?days=7"' in page


# Exports.


@time_machine.travel(MONDAY_MORNING + timedelta(minutes=25), tick=False)
def test_ticket_csv_has_chinese_headers_and_local_times(app, morning):
    supervisor = _client_as(app, "supervisor")

    response = supervisor.get("/supervisor/export/tickets.csv")
    rows = _csv_rows(response)

    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == "attachment; filename=tickets-20261207-0925.csv"
    assert rows[0] == TICKET_HEADERS_ZH
    assert [row[0] for row in rows[1:]] == [morning["transport"], morning["vulnerable"], morning["consultation"]]
    assert rows[1][1] == "2026-12-07 09:00"
    assert rows[1][2:8] == ["P1", "代理服务", "社区云", "社区云", "派单中", "练塘镇"]
    assert rows[1][9] == "139****1111"
    assert rows[1][12:] == ["已超时", "2026-12-07 09:15"]
    assert rows[2][10] == "话务员 王丽"


@time_machine.travel(MONDAY_MORNING + timedelta(minutes=25), tick=False)
def test_ticket_csv_applies_queue_filters(app, morning):
    supervisor = _client_as(app, "supervisor")

    by_source = _csv_rows(supervisor.get("/supervisor/export/tickets.csv?source=community_worker"))
    by_town = _csv_rows(supervisor.get("/supervisor/export/tickets.csv?town=310118103&priority=P1"))
    by_status = _csv_rows(supervisor.get("/supervisor/export/tickets.csv?status=waiting"))

    assert [row[0] for row in by_source[1:]] == [morning["consultation"]]
    assert [row[0] for row in by_town[1:]] == [morning["transport"]]
    assert by_status == [TICKET_HEADERS_ZH]


@time_machine.travel(MONDAY_MORNING + timedelta(minutes=25), tick=False)
def test_ticket_csv_in_english(app, morning):
    supervisor = _client_as(app, "supervisor")

    rows = _csv_rows(supervisor.get("/supervisor/export/tickets.csv?lang=en"))

    assert rows[0] == TICKET_HEADERS_EN
    assert rows[1][2:7] == ["P1", "Agency service", "Shequyun platform", "Shequyun", "Dispatching"]
    assert rows[1][12] == "Overdue"


@time_machine.travel(MONDAY_MORNING + timedelta(minutes=25), tick=False)
def test_ticket_xlsx_content(app, morning):
    supervisor = _client_as(app, "supervisor")

    response = supervisor.get("/supervisor/export/tickets.xlsx?source=shequyun")
    workbook = load_workbook(io.BytesIO(response.get_data()))
    rows = list(workbook["工单列表"].iter_rows(values_only=True))

    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert response.headers["Content-Disposition"] == "attachment; filename=tickets-20261207-0925.xlsx"
    assert workbook.sheetnames == ["工单列表"]
    assert list(rows[0]) == TICKET_HEADERS_ZH
    assert len(rows) == 2
    assert rows[1][0] == morning["transport"]
    assert rows[1][1] == datetime(2026, 12, 7, 9, 0)
    assert rows[1][13] == datetime(2026, 12, 7, 9, 15)


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_chart_csv_tables(app, week):
    supervisor = _client_as(app, "supervisor")

    response = supervisor.get("/supervisor/export/charts.csv?days=7")
    rows = _csv_rows(response)
    titles = [rows[index + 1][0] for index, row in enumerate(rows[:-1]) if row == []]

    assert response.headers["Content-Disposition"] == "attachment; filename=dashboard-20261201-20261207.csv"
    assert rows[0] == ["每日工单量（按来源）"]
    assert rows[1] == ["日期", "居民来电", "养老顾问", "救助顾问", "社区工作者", "社区云", "合计"]
    assert rows[2] == ["2026-12-01", "0", "0", "0", "1", "0", "1"]
    assert rows[8] == ["2026-12-07", "0", "0", "0", "2", "1", "3"]
    assert titles == CHART_SHEETS_ZH[1:]
    assert ["首次响应", "4", "3", "75.0"] in rows
    assert ["金泽镇", "5"] in rows


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_chart_xlsx_sheets(app, week):
    supervisor = _client_as(app, "supervisor")

    response = supervisor.get("/supervisor/export/charts.xlsx?days=7")
    workbook = load_workbook(io.BytesIO(response.get_data()))
    on_time = list(workbook["每日及时率"].iter_rows(values_only=True))
    first_response = list(workbook["首次响应中位时长"].iter_rows(values_only=True))

    assert workbook.sheetnames == CHART_SHEETS_ZH
    assert on_time[0] == ("日期", "已判定", "及时", "及时率（%）", "首次响应及时率（%）", "派单接单及时率（%）")
    assert on_time[3] == ("2026-12-03", 1, 0, 0.0, 0.0, None)
    assert first_response[7] == ("2026-12-07", 2, 20.0)


@time_machine.travel(at("2026-12-07T18:00:00+08:00"), tick=False)
def test_chart_xlsx_in_english(app, week):
    supervisor = _client_as(app, "supervisor")

    response = supervisor.get("/supervisor/export/charts.xlsx?days=7&lang=en")
    workbook = load_workbook(io.BytesIO(response.get_data()))

    assert workbook.sheetnames == ["Tickets per day by source", "On-time rate per day", "On-time rate per SLA target",
                                   "Median first response", "Agencies", "Tickets by town"]
    assert next(workbook["Agencies"].iter_rows(values_only=True))[:3] == ("Agency", "Kind", "Status")


def test_spreadsheet_cells_never_formulas():
    table = Table("委员会", ["name"], [["=HYPERLINK(\"http://example.test\")"], ["@SUM(A1)"], ["居委"]])

    text = to_csv([table]).decode("utf-8")
    sheet = load_workbook(io.BytesIO(to_xlsx([table])))["委员会"]

    assert text.splitlines()[1:] == ['"\'=HYPERLINK(""http://example.test"")"', "'@SUM(A1)", "居委"]
    assert sheet["A2"].value == "=HYPERLINK(\"http://example.test\")"
    assert sheet["A2"].data_type == "s"
    assert sheet["A3"].data_type == "s"
