"""A community worker on a phone-sized screen (375x667): log in, send a referral, find it in the list, and
search the knowledge base.

The browser, the live server and the page fixture are those of test_browser_operator.py.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from test_browser_operator import ARTIFACTS, live_server, page  # noqa: F401  (fixtures)
from web_helpers import PASSWORD
from werkzeug.security import generate_password_hash

from hotline import seed
from hotline.models import Referral, Ticket, User

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
SEA_BURIAL = "海葬预约与补贴"
PHONE = {"width": 375, "height": 667}

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@pytest.fixture
def community_worker(runtime, seeded):
    with runtime.transaction() as session:
        session.add(User(username="li.fang", display_name="社工 李芳", role="community_worker",
                         phone="+8613700000001", town_code="310118002", committee="复兴居委",
                         password_hash=generate_password_hash(PASSWORD)))


def _overflow(screen) -> int:
    return screen.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_community_worker_sends_referral_on_phone(page, runtime, community_worker):  # noqa: F811
    page.set_viewport_size(PHONE)
    with time_machine.travel(MONDAY_MORNING, tick=True):
        page.goto("/login")
        page.get_by_label("用户名").fill("li.fang")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url("**/portal/referrals")
        page.get_by_text("您还没有提交过转介").wait_for()

        page.get_by_role("link", name="新建转介").first.click()
        page.get_by_role("heading", name="新建转介").wait_for()
        assert page.get_by_label("街镇").input_value() == "310118002"
        assert page.get_by_label("居委/村委").input_value() == "复兴居委"
        assert _overflow(page) <= 0

        page.get_by_label("代理服务").check()
        page.get_by_label("遗体接运").check()
        page.get_by_label("独居老人").check()
        page.get_by_role("button", name="提交转介").click()
        assert "请填写此项" in page.locator("#resident-phone-error").inner_text()

        page.get_by_label("姓名").fill("陈阿婆家属")
        page.get_by_label("电话").fill("12345")
        page.get_by_role("button", name="提交转介").click()
        assert "电话号码 12345 无效" in page.locator("#resident-phone-error").inner_text()
        assert page.get_by_label("遗体接运").is_checked(), "the form keeps what was entered"
        assert _overflow(page) <= 0

        page.get_by_label("电话").fill("139 0000 2222")
        page.screenshot(path=str(ARTIFACTS / "portal-form.png"), full_page=True)
        page.get_by_role("button", name="提交转介").click()
        page.wait_for_url("**/portal/referrals")

        with runtime.transaction() as session:
            referral = session.exec(select(Referral)).one()
            number = session.get(Ticket, referral.ticket_id).number
        page.get_by_text(f"转介已提交，工单号为 {number}").wait_for()
        card = page.locator(f'li[data-number="{number}"]')
        assert "陈阿婆家属" in card.inner_text()
        assert "代理服务" in card.inner_text()
        assert _overflow(page) <= 0
        page.screenshot(path=str(ARTIFACTS / "portal-referrals.png"), full_page=True)


def test_community_worker_searches_kb_on_phone(page, runtime, community_worker):  # noqa: F811
    with runtime.transaction() as session:
        seed.seed_kb_articles(session)
    page.set_viewport_size(PHONE)
    with time_machine.travel(MONDAY_MORNING, tick=True):
        page.goto("/login")
        page.get_by_label("用户名").fill("li.fang")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url("**/portal/referrals")

        page.get_by_role("link", name="便民服务信息").click()
        page.get_by_role("heading", name="便民服务信息").wait_for()
        assert page.locator("li.kb-article").count() > 10, "without a query every published article is listed"
        assert _overflow(page) <= 0

        page.get_by_label("搜索文章").fill("海葬补贴")
        page.get_by_role("button", name="搜索").click()
        page.wait_for_url("**/portal/kb?q=*")
        first = page.locator("li.kb-article").first
        assert SEA_BURIAL in first.inner_text()
        assert "生态葬" in first.inner_text()
        assert "核实于 2026-12-04" in first.inner_text()
        assert page.get_by_label("搜索文章").input_value() == "海葬补贴"
        assert _overflow(page) <= 0
        page.screenshot(path=str(ARTIFACTS / "portal-kb-search.png"), full_page=True)

        first.get_by_role("link", name=SEA_BURIAL).click()
        page.get_by_role("heading", name=SEA_BURIAL).wait_for()
        sources = page.locator(".kb-sources a")
        assert sources.count() == 4
        assert all(sources.nth(index).get_attribute("href").startswith("http") for index in range(4))
        assert _overflow(page) <= 0
        page.screenshot(path=str(ARTIFACTS / "portal-kb-article.png"), full_page=True)

        page.get_by_role("link", name="返回搜索结果").click()
        page.wait_for_url("**/portal/kb?q=*")
        assert SEA_BURIAL in page.locator("li.kb-article").first.inner_text()
