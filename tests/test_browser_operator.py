"""An operator's shift in a real browser: log in, claim, change status, watch a ticket go overdue, switch language.

Playwright drives Debian's Chromium headless. The app runs in a werkzeug server on 127.0.0.1 in a thread of
this process, so time_machine moves the server's clock too. Screenshots go to test-artifacts/.
Without Chromium these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlmodel import select
from web_helpers import PASSWORD, refer
from werkzeug.serving import make_server

from hotline.models import Ticket, TicketEvent
from hotline.sla.sweep import sweep_breaches

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
IN_CI = os.environ.get("CI", "").lower() == "true"
MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
WAIT_MS = 10_000

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


def _browser_missing(message: str):
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires the browser tests)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def live_server(app):
    """Serve the test app on a free port of 127.0.0.1 from a thread; yield its base URL."""
    app.config["QUEUE_REFRESH_SECONDS"] = 1
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(live_server):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _browser_missing(f"Playwright is not installed: {error}")
    if not CHROMIUM.exists():
        _browser_missing(f"Chromium is not installed at {CHROMIUM}")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                      base_url=live_server)
        context.set_default_timeout(WAIT_MS)
        yield context.new_page()
        context.close()
        browser.close()


def _log_in(page, username="operator"):
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/")


def _row(page, number):
    return page.locator(f'tr[data-number="{number}"]')


def test_log_in_claim_next_and_change_status(page, client, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True):
        consultation = refer(client, seeded["community_worker"], "A")
        urgent = refer(client, seeded["elderly_advisor"], "B", flags=["solitary_elderly"], phone="13900001111")

        _log_in(page)
        page.get_by_role("heading", name="工单队列").wait_for()
        assert page.locator("tr[data-number]").evaluate_all("rows => rows.map(r => r.dataset.number)") == [
            urgent, consultation]
        page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

        page.keyboard.press("c")
        page.wait_for_url(f"**/tickets/{urgent}")
        page.get_by_text("您已签收工单").wait_for()

        page.get_by_label("新状态").select_option("waiting")
        page.get_by_role("button", name="变更状态").click()
        assert "改为 等待回复 状态须填写原因" in page.locator("#status-error").inner_text()

        page.get_by_label("原因").fill("家属明早九点回电确认时间")
        page.get_by_role("button", name="变更状态").click()
        page.get_by_text("状态已改为等待回复").wait_for()
        assert "家属明早九点回电确认时间" in page.locator("table.timeline").inner_text()
        page.screenshot(path=str(ARTIFACTS / "ticket.png"), full_page=True)

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == urgent)).one()
        reasons = session.exec(select(TicketEvent.reason).where(TicketEvent.ticket_id == ticket.id)
                               .where(TicketEvent.kind == "status").where(TicketEvent.to_value == "waiting")).all()
    assert ticket.status == "waiting"
    assert reasons == ["家属明早九点回电确认时间"]


def test_keyboard_moves_and_opens(page, client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True):
        first = refer(client, seeded["elderly_advisor"], "A", flags=["solitary_elderly"])
        second = refer(client, seeded["community_worker"], "B")
        _log_in(page)

        page.keyboard.press("j")
        page.keyboard.press("j")
        page.keyboard.press("k")
        assert _row(page, first).get_attribute("aria-selected") == "true"
        page.keyboard.press("j")
        page.keyboard.press("Enter")

        page.wait_for_url(f"**/tickets/{second}")


def test_queue_refreshes_without_reload(page, client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True):
        _log_in(page)
        page.evaluate("window.notReloaded = true")

        number = refer(client, seeded["community_worker"], "A")

        _row(page, number).wait_for()
        assert page.evaluate("window.notReloaded") is True


def test_ticket_turns_red_after_its_due_time(page, client, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True) as traveller:
        number = refer(client, seeded["community_worker"], "A")
        with runtime.transaction() as session:
            due = session.exec(select(Ticket.due_at).where(Ticket.number == number)).one()
        _log_in(page)
        assert _row(page, number).get_attribute("class") == "sla-ok"

        traveller.move_to(due + timedelta(minutes=1))
        assert sweep_breaches(runtime) == 1
        page.reload()

        assert _row(page, number).get_attribute("class") == "sla-breached"
        assert "已超时" in _row(page, number).locator("td.sla").inner_text()
        page.screenshot(path=str(ARTIFACTS / "queue-overdue.png"), full_page=True)


def test_switch_to_english_and_back(page, client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True):
        refer(client, seeded["community_worker"], "A")
        _log_in(page)

        page.get_by_role("link", name="English").click()
        page.get_by_role("heading", name="Ticket queue").wait_for()
        assert "Consultation" in page.locator("#queue").inner_text()

        page.goto("/tickets/new")
        page.get_by_role("heading", name="New ticket").wait_for()

        page.get_by_role("link", name="中文").click()
        page.get_by_role("heading", name="新建工单").wait_for()
        page.goto("/")
        page.get_by_role("heading", name="工单队列").wait_for()


def test_queue_fits_a_tablet(page, client, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True):
        refer(client, seeded["shequyun"], "A", category="agency_service", needs=["body_transport"], town="练塘镇")
        refer(client, seeded["elderly_advisor"], "B", flags=["solitary_elderly"])
        page.set_viewport_size({"width": 820, "height": 1180})
        _log_in(page)

        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

        assert overflow <= 0
        assert page.get_by_role("button", name="签收下一张").is_visible()
        page.screenshot(path=str(ARTIFACTS / "queue-tablet.png"), full_page=True)


def test_dispatch_by_hand_from_ticket_page(page, client, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=True):
        number = refer(client, seeded["shequyun"], "D", category="agency_service", needs=["body_transport"],
                       town="练塘镇")
        _log_in(page)
        page.goto(f"/tickets/{number}")
        panel = page.locator("section.dispatch-panel")
        panel.get_by_text("不服务本街镇").first.wait_for()

        page.locator("#cancel-reason").fill("家属要求改派殡仪馆")
        panel.get_by_role("button", name="撤回派单").click()
        page.get_by_text("派单已撤回").wait_for()

        page.locator("#dispatch-agency").select_option(label="青浦区殡仪馆接运服务队")
        page.locator("#dispatch-reason").fill("家属要求殡仪馆接运")
        page.locator("section.dispatch-panel").get_by_role("button", name="发出派单").click()
        page.get_by_text("派单已发出").wait_for()
        page.screenshot(path=str(ARTIFACTS / "dispatch.png"), full_page=True)

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        reasons = session.exec(select(TicketEvent.reason).where(TicketEvent.ticket_id == ticket.id)
                               .where(TicketEvent.kind == "offer_sent")).all()
    assert ticket.status == "dispatching"
    assert reasons[-1] == "人工派单：家属要求殡仪馆接运"
