"""The portal's knowledge base: referrers search published articles and read one with its sources."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

import pytest
import time_machine
from markupsafe import escape
from sqlmodel import select
from web_helpers import PASSWORD, log_in
from werkzeug.security import generate_password_hash

from hotline import seed
from hotline.kb import articles
from hotline.models import KbArticle, User

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
SEA_BURIAL = "海葬预约与补贴"
BUNDLE_ITEMS = "“公民身故一件事”办理事项和办理部门"
STAFF = ("operator", "supervisor", "admin")

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def frozen():
    with time_machine.travel(MONDAY_MORNING, tick=False):
        yield


@pytest.fixture
def kb(runtime, seeded) -> dict[str, int]:
    """The seeded articles; returns their ids by title."""
    with runtime.transaction() as session:
        seed.seed_kb_articles(session)
    with runtime.transaction() as session:
        return {article.title: article.id for article in session.exec(select(KbArticle)).all()}


@pytest.fixture
def worker_client(client, runtime, seeded):
    """A client logged in as an elderly-care advisor."""
    with runtime.transaction() as session:
        session.add(User(username="wang.min", display_name="顾问 王敏", role="elderly_advisor",
                         phone="+8613700000002", town_code="310118002", committee="复兴居委",
                         password_hash=generate_password_hash(PASSWORD)))
    assert log_in(client, "wang.min").status_code == 302
    return client


def _results(page: str) -> list[int]:
    """The article ids of the result list, in order."""
    return [int(found) for found in re.findall(r'<li class="kb-article" data-article="(\d+)">', page)]


def _result(page: str, article_id: int) -> str:
    match = re.search(rf'<li class="kb-article" data-article="{article_id}">(.*?)</li>', page, re.S)
    assert match, f"article {article_id} is not listed"
    return match.group(1)


def _withdraw(runtime, article_id: int) -> None:
    with runtime.transaction() as session:
        article = session.get(KbArticle, article_id)
        fields = replace(articles.fields_of(article), status="withdrawn")
        articles.update_article(session, article_id, article.version, fields, "user:1", MONDAY_MORNING)


# --- search ----------------------------------------------------------------------------------------


def test_search_ranks_best_match_first(worker_client, kb):
    response = worker_client.get("/portal/kb", query_string={"q": "海葬补贴"})

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    found = _results(page)
    assert found[0] == kb[SEA_BURIAL]
    assert "与“海葬补贴”相关的文章，最相关的排在前面。" in page
    assert 'value="海葬补贴"' in page, "the search box keeps the query"


def test_result_shows_title_summary_category_and_date(worker_client, runtime, kb):
    page = worker_client.get("/portal/kb", query_string={"q": "海葬补贴"}).get_data(as_text=True)

    card = _result(page, kb[SEA_BURIAL])
    with runtime.transaction() as session:
        article = session.get(KbArticle, kb[SEA_BURIAL])
    assert SEA_BURIAL in card
    assert str(escape(article.summary)) in card
    assert '<span class="kb-category">生态葬</span>' in card
    assert "核实于 2026-12-04" in card
    assert f'href="/portal/kb/{kb[SEA_BURIAL]}?q=' in card


def test_search_within_category(worker_client, kb):
    page = worker_client.get("/portal/kb", query_string={"q": "补贴", "category": "welfare_policy"}) \
        .get_data(as_text=True)

    found = _results(page)
    assert found, "the welfare articles mention 补贴"
    assert kb[SEA_BURIAL] not in found
    assert kb["基本殡葬服务补贴（惠民殡葬）"] in found
    assert '<option value="welfare_policy" selected>' in page


def test_no_query_lists_published_articles(worker_client, runtime, kb):
    _withdraw(runtime, kb[BUNDLE_ITEMS])

    page = worker_client.get("/portal/kb").get_data(as_text=True)

    assert sorted(_results(page)) == sorted(article_id for title, article_id in kb.items() if title != BUNDLE_ITEMS)
    assert 'placeholder="例如：海葬补贴"' in page


def test_unknown_category_ignored(worker_client, kb):
    page = worker_client.get("/portal/kb", query_string={"category": "weather"}).get_data(as_text=True)

    assert len(_results(page)) == len(kb)


@pytest.mark.parametrize("query", ["火星移民", "？！。"])
def test_search_without_match(worker_client, kb, query):
    response = worker_client.get("/portal/kb", query_string={"q": query})

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert _results(page) == []
    assert "没有找到相关文章" in page


def test_withdrawn_article_not_found(worker_client, runtime, kb):
    _withdraw(runtime, kb[SEA_BURIAL])

    page = worker_client.get("/portal/kb", query_string={"q": "海葬补贴"}).get_data(as_text=True)

    assert kb[SEA_BURIAL] not in _results(page)
    assert worker_client.get(f"/portal/kb/{kb[SEA_BURIAL]}").status_code == 404


def test_query_is_escaped(worker_client, kb):
    page = worker_client.get("/portal/kb", query_string={"q": "<script>alert(1)</script>"}).get_data(as_text=True)

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


# --- article page ----------------------------------------------------------------------------------


def test_article_shows_body_and_sources(worker_client, runtime, kb):
    response = worker_client.get(f"/portal/kb/{kb[SEA_BURIAL]}")

    page = response.get_data(as_text=True)
    with runtime.transaction() as session:
        article = session.get(KbArticle, kb[SEA_BURIAL])
    assert response.status_code == 200
    assert f"<h1>{SEA_BURIAL}</h1>" in page
    assert str(escape(article.body)) in page
    assert "核实于 2026-12-04" in page
    assert len(article.sources) == 4
    for source in article.sources:
        link = f'<a href="{escape(source["url"])}" rel="noopener noreferrer" target="_blank">'
        assert f'{link}{escape(source["name"])}</a>' in page, source["url"]
    assert "修改" not in page and "历史版本" not in page, "the portal shows no editing or history"


def test_article_links_back_to_search(worker_client, kb):
    with_query = worker_client.get(f"/portal/kb/{kb[SEA_BURIAL]}", query_string={"q": "海葬"}).get_data(as_text=True)
    without = worker_client.get(f"/portal/kb/{kb[SEA_BURIAL]}").get_data(as_text=True)

    assert 'href="/portal/kb?q=%E6%B5%B7%E8%91%AC">返回搜索结果</a>' in with_query
    assert 'href="/portal/kb">全部文章</a>' in without


def test_unknown_article_not_found(worker_client, kb):
    assert worker_client.get("/portal/kb/999999").status_code == 404


# --- who may open it -------------------------------------------------------------------------------


def test_nav_links_to_kb(worker_client, kb):
    listing = worker_client.get("/portal/referrals").get_data(as_text=True)
    search = worker_client.get("/portal/kb").get_data(as_text=True)

    assert '<a href="/portal/kb"' in listing
    assert "便民服务信息" in listing
    assert re.search(r'<a href="/portal/kb"\s+aria-current="page">便民服务信息</a>', search)


@pytest.mark.parametrize("role", STAFF)
def test_staff_refused_portal_kb(client, kb, role):
    log_in(client, role)

    assert client.get("/portal/kb").status_code == 403
    assert client.get(f"/portal/kb/{kb[SEA_BURIAL]}").status_code == 403


def test_anonymous_sent_to_login(client, kb):
    for path in ("/portal/kb", f"/portal/kb/{kb[SEA_BURIAL]}"):
        response = client.get(path)

        assert response.status_code == 302, path
        assert response.location.startswith("/login?next="), path


def test_referrer_still_refused_staff_kb(worker_client, kb):
    assert worker_client.get("/kb/").status_code == 403
    assert worker_client.get(f"/kb/{kb[SEA_BURIAL]}").status_code == 403


def test_english_page(worker_client, kb):
    page = worker_client.get("/portal/kb", query_string={"q": "海葬", "lang": "en"}).get_data(as_text=True)

    assert "Information service" in page
    assert '<span class="kb-category">Eco-burial</span>' in page
    assert "Checked on 2026-12-04" in page
