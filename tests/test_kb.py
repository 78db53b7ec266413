"""Knowledge articles (便民服务信息): Chinese search, the API for staff and referral sources, versions, and
the pages where admins edit and operators search."""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest
import time_machine
from sqlmodel import func, select
from web_helpers import csrf_token, log_in, refer

from hotline import seed, tokens
from hotline.kb import articles, search
from hotline.kb.seed_articles import ARTICLES
from hotline.kb.terms import query_terms, text_terms
from hotline.models import KbArticle, KbArticleVersion, KbTerm
from hotline.tokens import create_token

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
TUESDAY_NOON = datetime.fromisoformat("2026-12-08T12:00:00+08:00")
SEA_BURIAL = "海葬预约与补贴"


@pytest.fixture
def readers(runtime, seeded):
    """Staff tokens, plus source tokens that may read knowledge articles (scope kb:read)."""
    found = dict(seeded)
    with runtime.transaction() as session:
        for source in ("shequyun", "community_worker", "elderly_advisor"):
            found[source] = create_token(session, f"{source} kb", source=source, scopes=[tokens.KB_READ])
        found["shequyun_without_scope"] = create_token(session, "shequyun referrals", source="shequyun",
                                                       scopes=[tokens.REFERRALS_WRITE])
    return found


@pytest.fixture
def kb(runtime, seeded):
    """The seeded articles, added on Monday morning; returns the article ids by title."""
    with time_machine.travel(MONDAY_MORNING, tick=False), runtime.transaction() as session:
        seed.seed_kb_articles(session)
    with runtime.transaction() as session:
        return {article.title: article.id for article in session.exec(select(KbArticle)).all()}


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _search(client, token, query, **params):
    return client.get("/api/v1/kb/articles", query_string={"q": query, **params}, headers=_auth(token))


def _article(runtime, article_id) -> KbArticle:
    with runtime.transaction() as session:
        return session.get(KbArticle, article_id)


def _edit_form(client, article_id):
    page = client.get(f"/kb/{article_id}/edit").get_data(as_text=True)
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name, value = re.search(r' name="(\w+)"', tag), re.search(r' value="([^"]*)"', tag)
        if name and value:
            fields[name.group(1)] = value.group(1)
    fields.update(re.findall(r'<textarea[^>]* name="(\w+)"[^>]*>([^<]*)</textarea>', page))
    fields["category"] = re.search(r'<option value="(\w+)" selected>', page).group(1)
    fields["status"] = "published"
    return {name: value.replace("&#34;", '"').replace("&#39;", "'").replace("&amp;", "&")
            for name, value in fields.items()}


# --- terms ---------------------------------------------------------------------------------------


def test_query_terms_are_bigrams():
    assert query_terms("海葬补贴") == ["海葬", "葬补", "补贴"]
    assert query_terms("葬") == ["葬"]
    assert query_terms("电话 ９６２８４０，ABC") == ["电话", "962840", "abc"]
    assert query_terms("？！…") == []


def test_text_terms_include_characters_and_bigrams():
    terms = text_terms("海葬补贴4600元")

    assert {"海", "海葬", "葬补", "补贴", "4600", "元"} <= terms
    assert "贴4" not in terms


# --- search --------------------------------------------------------------------------------------


def test_sea_burial_subsidy_found_first(client, readers, kb):
    response = _search(client, readers["shequyun"], "海葬补贴")

    assert response.status_code == 200
    items = response.get_json()["items"]
    assert items[0]["title"] == SEA_BURIAL
    assert items[0]["category"] == "eco_burial"
    assert items[0]["category_label"] == "生态葬"
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > scores[1]
    assert items[0]["updated_at"] == "2026-12-07T09:00:00+08:00"
    assert items[0]["checked_on"] == "2026-12-04"
    assert items[0]["sources"][0]["url"].startswith("https://")
    assert "body" not in items[0]


def test_no_match_returns_empty_list(client, readers, kb):
    response = _search(client, readers["shequyun"], "火星旅游")

    assert response.status_code == 200
    assert response.get_json() == {"items": [], "next": None}


def test_search_punctuation_only_is_empty(client, readers, kb):
    assert _search(client, readers["operator"], "？？").get_json()["items"] == []


def test_search_filters_category(client, readers, kb):
    items = _search(client, readers["operator"], "补贴", category="welfare_policy").get_json()["items"]

    assert items
    assert {item["category"] for item in items} == {"welfare_policy"}


def test_search_finds_numbers(client, readers, kb):
    items = _search(client, readers["operator"], "962840").get_json()["items"]

    assert "青浦区殡仪馆在哪里？有哪些服务电话？" in [item["title"] for item in items]


def test_list_without_query_pages(client, readers, kb):
    first = client.get("/api/v1/kb/articles?limit=5", headers=_auth(readers["shequyun"])).get_json()
    rest = client.get(first["next"], headers=_auth(readers["shequyun"])).get_json()

    assert len(first["items"]) == 5
    assert first["next"].startswith("http://localhost/api/v1/kb/articles?")
    titles = [item["title"] for item in first["items"] + rest["items"]]
    assert len(set(titles)) == len(titles)


@pytest.mark.parametrize(("query_string", "field"), [
    ({"limit": "0"}, "limit"), ({"category": "weddings"}, "category"), ({"q": "长" * 101}, "q"),
])
def test_bad_parameters_name_field(client, readers, kb, query_string, field):
    response = client.get("/api/v1/kb/articles", query_string=query_string, headers=_auth(readers["operator"]))

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_get_article_with_body(client, readers, kb):
    response = client.get(f"/api/v1/kb/articles/{kb[SEA_BURIAL]}", headers=_auth(readers["elderly_advisor"]))

    assert response.status_code == 200
    article = response.get_json()
    assert article["title"] == SEA_BURIAL
    assert "4600元" in article["body"]
    assert article["version"] == 1
    assert article["url"].endswith(f"/api/v1/kb/articles/{kb[SEA_BURIAL]}")


def test_unknown_article_is_404(client, readers, kb):
    response = client.get("/api/v1/kb/articles/999999", headers=_auth(readers["shequyun"]))

    assert response.status_code == 404
    assert response.get_json()["error"]["field"] == "id"


@pytest.mark.parametrize(("token_name", "expected"), [
    (None, 401), ("shequyun", 200), ("community_worker", 200), ("operator", 200), ("supervisor", 200),
    ("shequyun_without_scope", 403),
])
def test_api_access(client, readers, kb, token_name, expected):
    headers = _auth(readers[token_name]) if token_name else {}

    assert client.get("/api/v1/kb/articles?q=海葬", headers=headers).status_code == expected
    assert client.get(f"/api/v1/kb/articles/{kb[SEA_BURIAL]}", headers=headers).status_code == expected


def test_seeding_twice_adds_nothing(runtime, kb):
    with runtime.transaction() as session:
        added = seed.seed_kb_articles(session)
        count = session.exec(select(func.count()).select_from(KbArticle)).one()

    assert added == 0
    assert count == len(ARTICLES) == len(kb)
    assert 10 <= count <= 15


def test_every_category_seeded(kb, runtime):
    with runtime.transaction() as session:
        categories = set(session.exec(select(KbArticle.category)).all())

    assert categories == set(articles.CATEGORIES)


# --- editing and versions ------------------------------------------------------------------------


def test_admin_edit_saves_new_version(client, runtime, kb):
    article_id = kb[SEA_BURIAL]
    with time_machine.travel(TUESDAY_NOON, tick=False):
        assert log_in(client, "admin").status_code == 302
        form = _edit_form(client, article_id)
        assert form["base_version"] == "1"
        form.update(title="海葬预约与补贴（2027年）", body=form["body"] + "\n新增：珊瑚礁观测船说明。",
                    change_note="补充说明")
        response = client.post(f"/kb/{article_id}/edit", data=form)

    assert response.status_code == 302
    article = _article(runtime, article_id)
    assert article.version == 2
    assert article.title == "海葬预约与补贴（2027年）"
    assert article.updated_by.startswith("user:")
    with runtime.transaction() as session:
        versions = session.exec(select(KbArticleVersion).where(KbArticleVersion.article_id == article_id)
                                .order_by(KbArticleVersion.version)).all()
    assert [(version.version, version.title) for version in versions] == [
        (1, SEA_BURIAL), (2, "海葬预约与补贴（2027年）")]
    assert versions[1].change_note == "补充说明"
    assert versions[0].body == versions[1].body.removesuffix("\n新增：珊瑚礁观测船说明。")


def test_history_and_old_version_pages(client, runtime, kb):
    article_id = kb[SEA_BURIAL]
    with time_machine.travel(TUESDAY_NOON, tick=False):
        log_in(client, "admin")
        form = _edit_form(client, article_id)
        client.post(f"/kb/{article_id}/edit", data={**form, "title": "海葬补贴新标题"})

        history = client.get(f"/kb/{article_id}/history").get_data(as_text=True)
        old = client.get(f"/kb/{article_id}/versions/1").get_data(as_text=True)
        missing = client.get(f"/kb/{article_id}/versions/9")

    assert re.findall(r'<tr data-version="(\d+)">', history) == ["2", "1"]
    assert "系统管理员" in history
    assert "初始数据" in history
    assert f"<h1>{SEA_BURIAL}</h1>" in old
    assert "当前版本为第 2 版" in old
    assert missing.status_code == 404


def test_edit_reindexes_search(client, runtime, kb, readers):
    article_id = kb["骨灰什么时候领取？可以寄存吗？"]
    with time_machine.travel(TUESDAY_NOON, tick=False):
        log_in(client, "admin")
        form = _edit_form(client, article_id)
        client.post(f"/kb/{article_id}/edit", data={**form, "body": "问：珊瑚礁怎么办？\n答：请致电。"})

    found = _search(client, readers["operator"], "珊瑚礁").get_json()["items"]
    assert [item["id"] for item in found] == [article_id]
    burials = _search(client, readers["operator"], "落葬").get_json()["items"]
    assert burials
    assert article_id not in [item["id"] for item in burials]
    with runtime.transaction() as session:
        terms = set(session.exec(select(KbTerm.term).where(KbTerm.article_id == article_id)).all())
    assert "珊瑚" in terms
    assert "落葬" not in terms


def test_stale_edit_is_conflict(client, runtime, kb):
    article_id = kb[SEA_BURIAL]
    with time_machine.travel(TUESDAY_NOON, tick=False):
        log_in(client, "admin")
        form = _edit_form(client, article_id)
        first = client.post(f"/kb/{article_id}/edit", data={**form, "title": "第一次修改"})
        second = client.post(f"/kb/{article_id}/edit", data={**form, "title": "第二次修改"})

    assert first.status_code == 302
    assert second.status_code == 409
    assert 'id="version-error"' in second.get_data(as_text=True)
    article = _article(runtime, article_id)
    assert (article.version, article.title) == (2, "第一次修改")


def test_admin_creates_article(client, runtime, kb, readers):
    with time_machine.travel(TUESDAY_NOON, tick=False):
        log_in(client, "admin")
        form = client.get("/kb/new").get_data(as_text=True)
        assert 'value="2026-12-08"' in form
        response = client.post("/kb/new", data={
            "csrf_token": csrf_token(client, "/kb/new"), "category": "faq", "title": "骨灰可以带回家吗？",
            "summary": "测试摘要", "body": "问：可以吗？\n答：请咨询殡仪馆。",
            "sources": "上海市民政局 | https://mzj.sh.gov.cn/binzang/index.html", "checked_on": "2026-12-08",
            "status": "published"})

    assert response.status_code == 302
    with runtime.transaction() as session:
        article = session.exec(select(KbArticle).where(KbArticle.title == "骨灰可以带回家吗？")).one()
    assert article.sources == [{"name": "上海市民政局", "url": "https://mzj.sh.gov.cn/binzang/index.html"}]
    assert article.checked_on == date(2026, 12, 8)
    assert article.version == 1
    assert _search(client, readers["shequyun"], "带回家").get_json()["items"][0]["id"] == article.id


def test_form_errors_name_fields_and_write_nothing(client, runtime, kb):
    with time_machine.travel(TUESDAY_NOON, tick=False):
        log_in(client, "admin")
        response = client.post("/kb/new", data={
            "csrf_token": csrf_token(client, "/kb/new"), "category": "weddings", "title": "", "summary": "摘要",
            "body": "正文", "sources": "民政局 | ftp://example.org/x", "checked_on": "2026-12-09"})

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for field in ("category", "title", "sources", "checked_on"):
        assert f'id="{field}-error"' in page
    assert 'id="summary-error"' not in page
    with runtime.transaction() as session:
        assert session.exec(select(func.count()).select_from(KbArticle)).one() == len(kb)


def test_withdrawn_article_hidden(client, runtime, kb, readers):
    article_id = kb[SEA_BURIAL]
    with time_machine.travel(TUESDAY_NOON, tick=False):
        log_in(client, "admin")
        form = _edit_form(client, article_id)
        client.post(f"/kb/{article_id}/edit", data={**form, "status": "withdrawn"})
        admin_page = client.get(f"/kb/{article_id}")
    log_in(client, "operator")

    assert admin_page.status_code == 200
    assert client.get(f"/kb/{article_id}").status_code == 404
    assert client.get(f"/api/v1/kb/articles/{article_id}", headers=_auth(readers["shequyun"])).status_code == 404
    titles = [item["title"] for item in _search(client, readers["shequyun"], "海葬补贴").get_json()["items"]]
    assert SEA_BURIAL not in titles


@pytest.mark.parametrize("username", ["operator", "supervisor"])
def test_only_admins_edit(client, runtime, kb, username):
    article_id = kb[SEA_BURIAL]
    log_in(client, username)

    assert client.get("/kb/new").status_code == 403
    assert client.get(f"/kb/{article_id}/edit").status_code == 403
    response = client.post(f"/kb/{article_id}/edit", data={"csrf_token": csrf_token(client, "/"), "title": "改"})
    assert response.status_code == 403
    assert client.get(f"/kb/{article_id}").status_code == 200
    assert client.get(f"/kb/{article_id}/history").status_code == 200
    assert _article(runtime, article_id).version == 1


@pytest.mark.parametrize("path", ["/kb/", "/kb/new", "/kb/1", "/kb/1/edit", "/kb/1/history", "/kb/panel?q=海葬"])
def test_anonymous_redirected_to_login(client, kb, path):
    response = client.get(path)

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# --- pages for operators -------------------------------------------------------------------------


def test_list_page_searches(client, kb):
    log_in(client, "operator")

    page = client.get("/kb/?q=海葬补贴").get_data(as_text=True)
    empty = client.get("/kb/?q=火星旅游").get_data(as_text=True)

    assert re.findall(r'<tr data-article="(\d+)">', page)[0] == str(kb[SEA_BURIAL])
    assert re.findall(r'<tr data-article="(\d+)">', empty) == []
    assert "新建文章" not in page


def test_ticket_page_has_search_panel(client, seeded, kb):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        number = refer(client, seeded["community_worker"], "K1")
    log_in(client, "operator")

    page = client.get(f"/tickets/{number}").get_data(as_text=True)
    panel = client.get("/kb/panel?q=海葬补贴").get_data(as_text=True)
    nothing = client.get("/kb/panel?q=火星旅游").get_data(as_text=True)

    assert 'id="kb-panel-form"' in page
    assert 'data-panel-url="/kb/panel"' in page
    assert re.findall(r'<li data-article="(\d+)">', panel)[0] == str(kb[SEA_BURIAL])
    assert "3000元发给家属" in panel
    assert re.findall(r'<li data-article="(\d+)">', nothing) == []


def test_search_function_ranks_title_matches(runtime, kb):
    with runtime.transaction() as session:
        hits = search.search_articles(session, "节地生态安葬补贴")

    assert hits[0].article.title == "节地生态安葬补贴"
