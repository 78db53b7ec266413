"""The admins' API token page: the list, revoking a token, issuing a source token, and who may open it."""

from __future__ import annotations

import logging
import re
from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from web_helpers import PASSWORD, csrf_token, log_in
from werkzeug.security import generate_password_hash

from hotline import tokens
from hotline.models import ApiToken, User

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
API_CALL = datetime.fromisoformat("2026-12-07T09:30:45+08:00")
SECRET = re.compile(r'<code class="secret" id="issued-secret">(hl_[A-Za-z0-9_-]+)</code>')

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def frozen():
    """Monday morning, with the clock stopped; a test moves it only forward, or the session cookie breaks."""
    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        yield traveller


@pytest.fixture
def issued(frozen, seeded):
    """The seeded tokens, issued on Monday morning; returns the secrets by source or role."""
    return seeded


@pytest.fixture
def admin_client(client, issued):
    assert log_in(client, "admin").status_code == 302
    return client


def _token(runtime, secret) -> ApiToken:
    with runtime.transaction() as session:
        return session.exec(select(ApiToken).where(ApiToken.token_hash == tokens.digest(secret))).one()


def _row(page: str, token: ApiToken) -> str:
    match = re.search(rf'<tr id="token-{token.id}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"token {token.prefix} is not listed"
    return match.group(1)


def _cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]


def _revoke(client, token: ApiToken, reason=None):
    data = {"csrf_token": csrf_token(client, "/admin/tokens")}
    if reason is not None:
        data["reason"] = reason
    return client.post(f"/admin/tokens/{token.id}/revoke", data=data)


def _create(client, **fields):
    return client.post("/admin/tokens", data={"csrf_token": csrf_token(client, "/admin/tokens"), **fields})


def _token_count(runtime) -> int:
    with runtime.transaction() as session:
        return len(session.exec(select(ApiToken.id)).all())


def _kb_read(client, secret):
    return client.get("/api/v1/kb/articles", headers={"Authorization": f"Bearer {secret}"})


def _refer(client, secret, external_id):
    return client.post("/api/v1/referrals", headers={"Authorization": f"Bearer {secret}"},
                       json={"external_id": external_id, "category": "consultation",
                             "resident": {"phone": "13812345678", "town": "金泽镇"}})


# --- the list --------------------------------------------------------------------------------------


def test_list_shows_every_token(admin_client, runtime, issued):
    response = admin_client.get("/admin/tokens")

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    with runtime.transaction() as session:
        all_tokens = session.exec(select(ApiToken)).all()
    assert len(re.findall(r'<tr id="token-\d+"', page)) == len(all_tokens) == 6
    shequyun = _token(runtime, issued["shequyun"])
    cells = _cells(_row(page, shequyun))
    assert cells[:4] == [shequyun.prefix, "shequyun", "社区云", "提交转介；查看本来源的转介，登记并查看状态回调"]
    assert cells[4] == "2026-12-07 09:00"
    assert cells[5:7] == ["尚未使用", "—"]
    assert 'placeholder="原因（可不填）"' in _row(page, shequyun)


def test_list_shows_role_and_last_use(admin_client, runtime, issued, frozen):
    frozen.move_to(API_CALL)
    response = admin_client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {issued['operator']}"})
    assert response.status_code == 200

    page = admin_client.get("/admin/tokens").get_data(as_text=True)

    cells = _cells(_row(page, _token(runtime, issued["operator"])))
    assert cells[2] == "话务员 · 话务员 王丽"
    assert cells[3] == "由角色决定"
    assert cells[5] == "2026-12-07 09:30", "last used, in Asia/Shanghai to the minute"


def test_list_in_english(admin_client, runtime, issued):
    page = admin_client.get("/admin/tokens?lang=en").get_data(as_text=True)

    cells = _cells(_row(page, _token(runtime, issued["elderly_advisor"])))
    assert cells[2] == "Elderly-care advisor"
    assert "File referrals" in cells[3]
    assert cells[5] == "Not used yet"


def test_admin_nav_links_tokens(admin_client, app, issued):
    operator = app.test_client()
    log_in(operator, "operator")

    assert '<a href="/admin/tokens">API 令牌</a>' in admin_client.get("/").get_data(as_text=True)
    assert "/admin/tokens" not in operator.get("/").get_data(as_text=True)


# --- revoking --------------------------------------------------------------------------------------


def test_revoke_with_reason(admin_client, runtime, issued, frozen, caplog):
    token = _token(runtime, issued["shequyun"])
    assert _refer(admin_client, issued["shequyun"], "BEFORE").status_code == 201
    frozen.move_to(API_CALL)

    with caplog.at_level(logging.INFO, logger="hotline.web.tokens_admin"):
        response = _revoke(admin_client, token, "社区云更换了对接系统")

    assert response.status_code == 302
    assert response.location == f"/admin/tokens#token-{token.id}"
    revoked = _token(runtime, issued["shequyun"])
    assert revoked.revoked_at is not None
    assert _refer(admin_client, issued["shequyun"], "AFTER").status_code == 401
    with runtime.transaction() as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
    messages = [record.getMessage() for record in caplog.records if record.name == "hotline.web.tokens_admin"]
    assert messages == [f"Tokens admin: user {admin.id} revoked token {token.prefix} (shequyun); "
                        "reason: '社区云更换了对接系统'"]
    page = admin_client.get(response.location).get_data(as_text=True)
    assert f"令牌 {token.prefix}（shequyun）已吊销，立即失效。" in page
    row = _row(page, revoked)
    assert _cells(row)[6] == "2026-12-07 09:30"
    assert "revoke" not in row, "a revoked token has no revoke button"


def test_revoke_without_reason(admin_client, runtime, issued, caplog):
    token = _token(runtime, issued["community_worker"])

    with caplog.at_level(logging.INFO, logger="hotline.web.tokens_admin"):
        response = _revoke(admin_client, token)

    assert response.status_code == 302
    assert _token(runtime, issued["community_worker"]).revoked_at is not None
    assert any(record.getMessage().endswith("reason: None") for record in caplog.records)


def test_revoke_twice(admin_client, runtime, issued):
    token = _token(runtime, issued["elderly_advisor"])
    _revoke(admin_client, token)
    first = _token(runtime, issued["elderly_advisor"]).revoked_at

    response = _revoke(admin_client, token)

    assert response.status_code == 302
    assert _token(runtime, issued["elderly_advisor"]).revoked_at == first
    page = admin_client.get("/admin/tokens").get_data(as_text=True)
    assert f"令牌 {token.prefix}（elderly_advisor）此前已吊销。" in page


def test_revoke_reason_too_long(admin_client, runtime, issued):
    token = _token(runtime, issued["shequyun"])

    response = _revoke(admin_client, token, "因" * 201)

    assert response.status_code == 302
    assert _token(runtime, issued["shequyun"]).revoked_at is None
    assert "原因过长：最多填写 200 个字。" in admin_client.get("/admin/tokens").get_data(as_text=True)


def test_revoke_needs_csrf_token(admin_client, runtime, issued):
    token = _token(runtime, issued["shequyun"])

    response = admin_client.post(f"/admin/tokens/{token.id}/revoke", data={"reason": "测试"})

    assert response.status_code == 400
    assert _token(runtime, issued["shequyun"]).revoked_at is None


def test_revoke_unknown_token(admin_client):
    assert _revoke(admin_client, ApiToken(id=999999, token_hash="", prefix="", name="")).status_code == 404


# --- issuing ---------------------------------------------------------------------------------------


def test_issue_source_token(admin_client, runtime, caplog):
    before = _token_count(runtime)

    with caplog.at_level(logging.INFO, logger="hotline.web.tokens_admin"):
        response = _create(admin_client, source="shequyun", name="社区云 知识库", scopes=["kb:read"])

    page = response.get_data(as_text=True)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    secret = SECRET.search(page).group(1)
    token = _token(runtime, secret)
    assert (token.name, token.source, token.role, token.scopes) == ("社区云 知识库", "shequyun", None, ["kb:read"])
    assert f"令牌 {token.prefix}（社区云 知识库）已签发" in page
    assert _token_count(runtime) == before + 1
    assert _kb_read(admin_client, secret).status_code == 200
    assert _refer(admin_client, secret, "X1").status_code == 403, "the token may only read articles"
    assert secret not in admin_client.get("/admin/tokens").get_data(as_text=True), "the secret is shown once"
    assert not any(secret in record.getMessage() for record in caplog.records)
    assert any(token.prefix in record.getMessage() for record in caplog.records)


def test_issue_with_default_scopes_and_name(admin_client, runtime):
    form = admin_client.get("/admin/tokens").get_data(as_text=True)
    checked = re.findall(r'name="scopes" value="([a-z:]+)"\s+checked', form)

    response = _create(admin_client, source="community_worker", scopes=checked)

    token = _token(runtime, SECRET.search(response.get_data(as_text=True)).group(1))
    assert checked == list(tokens.DEFAULT_SOURCE_SCOPES)
    assert token.name == "community_worker"
    assert token.scopes == list(tokens.DEFAULT_SOURCE_SCOPES)


@pytest.mark.parametrize("fields, field, message", [
    ({"scopes": ["kb:read"]}, "source", "请选择令牌所属的转介来源。"),
    ({"source": "resident", "scopes": ["kb:read"]}, "source", "请选择令牌所属的转介来源。"),
    ({"source": "shequyun"}, "scopes", "请至少选择一项权限。"),
    ({"source": "shequyun", "scopes": ["tickets:delete"]}, "scopes", "请至少选择一项权限。"),
    ({"source": "shequyun", "scopes": ["kb:read"], "name": "名" * 101}, "name", "名称过长：最多填写 100 个字。"),
])
def test_issue_rejects_invalid_form(admin_client, runtime, fields, field, message):
    before = _token_count(runtime)

    response = _create(admin_client, **fields)

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'<p class="field-error" id="{field}-error">{message}</p>' in page
    assert 'class="secret"' not in page
    assert _token_count(runtime) == before


def test_issue_needs_csrf_token(admin_client, runtime):
    before = _token_count(runtime)

    response = admin_client.post("/admin/tokens", data={"source": "shequyun", "scopes": ["kb:read"]})

    assert response.status_code == 400
    assert _token_count(runtime) == before


# --- who may open it -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "supervisor"])
def test_staff_refused(client, runtime, issued, role):
    log_in(client, role)
    token = _token(runtime, issued["shequyun"])
    before = _token_count(runtime)

    assert client.get("/admin/tokens").status_code == 403
    assert _revoke_as(client, token).status_code == 403
    assert client.post("/admin/tokens", data={"source": "shequyun", "scopes": ["kb:read"],
                                              "csrf_token": csrf_token(client, "/tickets/new")}).status_code == 403
    assert _token(runtime, issued["shequyun"]).revoked_at is None
    assert _token_count(runtime) == before


def _revoke_as(client, token):
    return client.post(f"/admin/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(client, "/tickets/new")})


def test_referrer_refused(client, runtime, issued, caplog):
    with runtime.transaction() as session:
        session.add(User(username="li.fang", display_name="社工 李芳", role="community_worker",
                         phone="+8613700000001", town_code="310118002", committee="复兴居委",
                         password_hash=generate_password_hash(PASSWORD)))
    log_in(client, "li.fang")
    token = _token(runtime, issued["shequyun"])

    with caplog.at_level(logging.WARNING, logger="hotline.web.portal"):
        page = client.get("/admin/tokens")
        revoke = client.post(f"/admin/tokens/{token.id}/revoke",
                             data={"csrf_token": csrf_token(client, "/portal/referrals")})

    assert (page.status_code, revoke.status_code) == (403, 403)
    assert any("rejected GET /admin/tokens of referrer" in record.getMessage() for record in caplog.records), \
        "the portal's guard rejects the request before the page's own role check"
    assert _token(runtime, issued["shequyun"]).revoked_at is None


def test_anonymous_sent_to_login(client, runtime, issued):
    token = _token(runtime, issued["shequyun"])

    page = client.get("/admin/tokens")
    revoke = client.post(f"/admin/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(client)})

    assert page.status_code == 302
    assert page.location.startswith("/login?next=")
    assert revoke.status_code == 302
    assert _token(runtime, issued["shequyun"]).revoked_at is None
