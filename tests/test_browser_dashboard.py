"""A supervisor's dashboard in a real browser: tiles, a breached ticket in red, charts, an agency suspended from
its row, live refresh, exports.

Uses the live_server and page fixtures of test_browser_operator.py, imported by name so pytest finds them. The
tests' `page` arguments therefore shadow the import (F811). The first test also saves test-artifacts/dashboard.png,
from which the README's docs/screenshots/dashboard.png is copied by hand when the dashboard changes.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
import time_machine
from openpyxl import load_workbook
from sqlmodel import select
from test_browser_operator import ARTIFACTS, live_server, page  # noqa: F401
from web_helpers import PASSWORD, refer

from hotline import tickets
from hotline.dispatch.offers import answer_offer
from hotline.models import Offer, Ticket, User
from hotline.sla.sweep import sweep_breaches

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
SCREENSHOT = ARTIFACTS / "dashboard.png"
RED = "rgb(253, 227, 225)"

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def _claim(runtime, number, instant):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        operator = session.exec(select(User).where(User.username == "operator")).one()
        assert tickets.claim(session, runtime, ticket, operator.id, f"user:{operator.id}", instant)


def _accept_first_offer(runtime, number, instant):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        offer = session.exec(select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt)).first()
    answer_offer(runtime, offer.id, True, f"agency:{offer.agency_id}", None, instant)


def _pending_offer_agency(runtime, number) -> int | None:
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        offer = session.exec(select(Offer).where(Offer.ticket_id == ticket.id).where(Offer.state == "pending")).first()
        return offer.agency_id if offer else None


def _week_of_tickets(client, runtime, seeded, traveller):
    """Referrals on the five days before Monday, some answered, one body transport accepted by an agency."""
    sources = ["community_worker", "elderly_advisor", "shequyun", "assistance_advisor"]
    towns = ["金泽镇", "练塘镇", "夏阳街道", "朱家角镇", "赵巷镇"]
    for day in range(5, 0, -1):
        for index in range(day % 3 + 2):
            instant = MONDAY_MORNING - timedelta(days=day) + timedelta(hours=index)
            traveller.move_to(instant)
            number = refer(client, seeded[sources[(day + index) % 4]], f"W{day}-{index}",
                           town=towns[(day * 2 + index) % 5], phone=f"1390000{day}{index:03d}")
            if index % 2 == 0:
                _claim(runtime, number, instant + timedelta(minutes=10 + 15 * index + 5 * day))
    traveller.move_to(datetime.fromisoformat("2026-12-05T11:00:00+08:00"))
    transport = refer(client, seeded["shequyun"], "W-transport", category="agency_service",
                      needs=["body_transport"], town="练塘镇", phone="13900009999")
    _accept_first_offer(runtime, transport, datetime.fromisoformat("2026-12-05T11:07:00+08:00"))


def _log_in_as_supervisor(browser):
    browser.goto("/login")
    browser.get_by_label("用户名").fill("supervisor")
    browser.get_by_label("密码").fill(PASSWORD)
    browser.get_by_role("button", name="登录").click()
    browser.wait_for_url("**/")
    browser.get_by_role("link", name="主管看板").click()
    browser.wait_for_url("**/supervisor")
    browser.get_by_role("heading", name="主管看板").wait_for()


def _charts_drawn(browser) -> list[int]:
    """Wait for the charts, then return the number of series in each one."""
    browser.locator('#dashboard[data-charts-ready="true"]').wait_for(state="attached")
    return browser.locator("[data-chart]").evaluate_all(
        "elements => elements.map(e => window.echarts.getInstanceByDom(e).getOption().series.length)")


def test_dashboard_tiles_red_breach_and_charts(page, app, client, runtime, seeded):  # noqa: F811
    app.config["DASHBOARD_REFRESH_SECONDS"] = 1
    with time_machine.travel(MONDAY_MORNING - timedelta(days=5), tick=True) as traveller:
        _week_of_tickets(client, runtime, seeded, traveller)
        traveller.move_to(MONDAY_MORNING)
        refer(client, seeded["community_worker"], "A")
        transport = refer(client, seeded["shequyun"], "B", category="agency_service", needs=["body_transport"],
                          town="练塘镇", phone="13900001111")
        traveller.move_to(MONDAY_MORNING + timedelta(minutes=25))
        sweep_breaches(runtime)

        _log_in_as_supervisor(page)
        breached_row = page.locator(f'#breached-list tr[data-number="{transport}"]')
        series = _charts_drawn(page)

        # The week's unanswered tickets are overdue too, so the tile counts every row of the list.
        assert page.locator('[data-tile="breached"]').inner_text() == str(page.locator("#breached-list tr").count() - 1)
        assert page.locator('[data-tile="waiting_on_agencies"]').inner_text() == "2"
        assert "已超时 10分" in breached_row.inner_text()
        assert breached_row.locator("td.sla").evaluate("cell => getComputedStyle(cell).backgroundColor") == RED
        assert page.locator("[data-chart] canvas").count() == 6
        assert series[0] == 5
        assert series[1] >= 2
        assert min(series) == 1
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Suspend the agency with the transport ticket's pending offer, from its row in the agency table.
        agency_id = _pending_offer_agency(runtime, transport)
        agency_row = page.locator(f'#agency-table tr[data-agency="{agency_id}"]')
        agency_row.get_by_text("变更状态").click()
        agency_row.get_by_label("原因").fill("家属投诉收费不透明，暂停派单核查")
        agency_row.get_by_role("button", name="暂停派单").click()
        confirmation = page.locator("#status-confirmation")
        confirmation.get_by_role("heading", name="确认状态变更").wait_for()
        assert "1 个待接单的派单将被撤回" in confirmation.inner_text()
        page.screenshot(path=str(ARTIFACTS / "agency-confirmation.png"), full_page=True)
        confirmation.get_by_role("button", name="确认：暂停派单").click()
        page.wait_for_url("**/supervisor")

        assert agency_row.locator(".agency-status").inner_text() == "已暂停"
        assert "已准入 → 已暂停" in page.locator(".flash-success").inner_text()
        assert "已撤回 1 个待接单的派单" in page.locator(".flash-info").inner_text()
        assert _pending_offer_agency(runtime, transport) not in (None, agency_id), "the ticket went to another agency"


def test_dashboard_refreshes_without_reload(page, app, client, seeded):  # noqa: F811
    app.config["DASHBOARD_REFRESH_SECONDS"] = 1
    with time_machine.travel(MONDAY_MORNING, tick=True):
        refer(client, seeded["community_worker"], "A")
        _log_in_as_supervisor(page)
        page.evaluate("window.notReloaded = true")
        assert page.locator('[data-tile="open"]').inner_text() == "1"

        refer(client, seeded["elderly_advisor"], "B", phone="13900002222")

        page.locator('[data-tile="open"]', has_text="2").wait_for()
        assert page.evaluate("window.notReloaded") is True


def test_dashboard_downloads_exports(page, client, seeded, tmp_path):  # noqa: F811
    with time_machine.travel(MONDAY_MORNING, tick=True):
        number = refer(client, seeded["community_worker"], "A")
        _log_in_as_supervisor(page)

        page.locator('#export-heading ~ form select[name="source"]').select_option("community_worker")
        with page.expect_download() as tickets_download:
            page.get_by_role("button", name="下载 CSV").click()
        with page.expect_download() as charts_download:
            page.get_by_role("link", name="XLSX").click()

        tickets_csv = tmp_path / tickets_download.value.suggested_filename
        tickets_download.value.save_as(tickets_csv)
        charts_xlsx = charts_download.value.path().read_bytes()
        lines = tickets_csv.read_text(encoding="utf-8").splitlines()
        workbook = load_workbook(io.BytesIO(charts_xlsx))

        assert tickets_csv.name.startswith("tickets-20261207-")
        assert lines[0].startswith("\ufeff工单号,建单时间,优先级")
        assert lines[1].startswith(f"{number},2026-12-07 09:00,P3,治丧咨询,社区工作者")
        assert charts_download.value.suggested_filename == "dashboard-20261201-20261207.xlsx"
        assert workbook.sheetnames[0] == "每日工单量（按来源）"
        page.screenshot(path=str(ARTIFACTS / "dashboard-export.png"))
