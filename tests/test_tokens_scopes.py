"""Token scopes: defaults, the `hotline tokens` commands, 403 naming the scope, and a platform's own referrals."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlmodel import select

from hotline import tokens
from hotline.api.auth import required_scope
from hotline.cli import main
from hotline.models import ApiToken

REFERRAL = {
    "external_id": "SQY-20261207-0042",
    "resident": {"name": "周敏", "phone": "13761234567", "town": "练塘镇", "committee": "东厍村委会"},
    "category": "consultation",
    "note": "询问骨灰寄存。",
}


def _cli(settings, *args: str, language: str | None = None):
    env = {"HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_INSTANCE_DIR": str(settings.instance_dir),
           "HOTLINE_CLI_LANGUAGE": language}
    return CliRunner().invoke(main, ["tokens", *args], env=env)


def _new_token(runtime, source: str, scopes):
    with runtime.transaction() as session:
        return tokens.create_token(session, f"{source} test", source=source, scopes=scopes)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept-Language": "en"}


def test_source_token_default_scopes(runtime):
    secret = _new_token(runtime, "shequyun", None)

    with runtime.transaction() as session:
        token = tokens.find_token(session, secret)
    assert token.scopes == ["referrals:write", "referrals:read"]


def test_scopes_normalised_in_catalogue_order():
    assert tokens.normalise_scopes(["kb:read", "referrals:write", "kb:read"]) == ["referrals:write", "kb:read"]


def test_unknown_scope_rejected(runtime):
    with pytest.raises(ValueError, match="unknown scope 'tickets:write'"):
        _new_token(runtime, "shequyun", ["tickets:write"])


def test_role_token_takes_no_scopes(runtime):
    with runtime.transaction() as session, pytest.raises(ValueError, match="staff token takes no scopes"):
        tokens.create_token(session, "operator", role="operator", scopes=["kb:read"])


@pytest.mark.parametrize("method, rule, scope", [
    ("POST", "/api/v1/referrals", "referrals:write"),
    ("GET", "/api/v1/referrals/<external_id>", "referrals:read"),
    ("PUT", "/api/v1/webhook", "referrals:read"),
    ("GET", "/api/v1/webhook/deliveries", "referrals:read"),
    ("GET", "/api/v1/kb/articles", "kb:read"),
    ("POST", "/open311/v2/requests.json", "referrals:write"),
    ("GET", "/open311/v2/requests.json", "referrals:read"),
    ("GET", "/open311/v2/requests/<service_request_id>.json", "referrals:read"),
    ("GET", "/api/v1/tickets", None),
    ("GET", "/api/v1/referralsx", None),
])
def test_required_scope_by_route(method, rule, scope):
    assert required_scope(method, rule) == scope


@pytest.mark.parametrize("language", [None, "en"])
def test_cli_create_with_scopes(runtime, settings, language):
    result = _cli(settings, "create", "--source", "shequyun", "--scope", "referrals:write", "--scope", "kb:read",
                  language=language)

    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    secret = result.stdout.removesuffix("\n")
    assert secret.startswith("hl_")
    assert "\n" not in secret, "the token is alone on stdout in both languages"
    with runtime.transaction() as session:
        token = tokens.find_token(session, secret)
    assert token.source == "shequyun"
    assert token.scopes == ["referrals:write", "kb:read"]


def test_cli_role_with_scope_rejected(runtime, settings):
    result = _cli(settings, "create", "--role", "operator", "--scope", "kb:read")

    assert result.exit_code == 2
    assert "--scope 只用于来源令牌" in result.output


def test_cli_list_shows_tokens(runtime, settings, seeded):
    _cli(settings, "create", "--source", "shequyun", "--name", "社区云生产", "--scope", "kb:read")

    result = _cli(settings, "list")
    english = _cli(settings, "list", language="en")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["前缀", "令牌名称", "来源或角色", "权限", "签发时间", "最近使用", "吊销时间"]
    row = next(line for line in lines if "社区云生产" in line)
    assert "社区云" in row
    assert "查看便民服务信息" in row
    assert "提交转介" not in row
    operator_row = next(line for line in lines if line.split()[1] == "operator")
    assert "话务员" in operator_row
    assert "由角色决定" in operator_row
    english_lines = english.output.splitlines()
    assert english_lines[0].split() == ["Prefix", "Token", "name", "Source", "or", "role", "Scopes", "Issued",
                                        "Last", "used", "Revoked"]
    english_row = next(line for line in english_lines if "社区云生产" in line)
    assert "Shequyun platform" in english_row
    assert "Read knowledge articles" in english_row


def test_cli_revoke_stops_token(runtime, settings, client, seeded):
    with runtime.transaction() as session:
        prefix = session.exec(select(ApiToken.prefix).where(ApiToken.name == "shequyun")).one()

    result = _cli(settings, "revoke", prefix)

    assert result.exit_code == 0, result.output
    assert result.output == f"令牌 {prefix}（shequyun）已吊销，立即失效。\n"
    response = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(seeded["shequyun"]))
    assert response.status_code == 401
    listed = _cli(settings, "list").output
    revoked_row = next(line for line in listed.splitlines() if line.startswith(prefix))
    assert revoked_row.split()[-2:] != ["-"], "the revoked column shows a time"


def test_cli_revoke_unknown_prefix(runtime, settings):
    result = _cli(settings, "revoke", "hl_nothing")
    english = _cli(settings, "revoke", "hl_nothing", language="en")

    assert result.exit_code == 1
    assert "没有前缀为 hl_nothing 的令牌" in result.output
    assert english.exit_code == 1
    assert "No token has the prefix hl_nothing;" in english.output


def test_missing_scope_gets_403_naming_it(client, runtime, seeded):
    reader = _new_token(runtime, "shequyun", ["referrals:read", "kb:read"])

    response = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(reader))

    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "insufficient_scope"
    assert "referrals:write" in error["message"]
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="referrals:write"'


def test_missing_scope_message_in_chinese(client, runtime, seeded):
    writer = _new_token(runtime, "shequyun", ["referrals:write"])

    response = client.get("/api/v1/referrals/SQY-1", headers={"Authorization": f"Bearer {writer}",
                                                               "Accept-Language": "zh-CN"})

    assert response.status_code == 403
    message = response.get_json()["error"]["message"]
    assert "referrals:read" in message
    assert any("\u4e00" <= character <= "\u9fff" for character in message), message


def test_write_scope_files_referral(client, runtime, seeded):
    writer = _new_token(runtime, "shequyun", ["referrals:write"])

    response = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(writer))

    assert response.status_code == 201
    assert response.get_json()["source"] == "shequyun"


def test_platform_reads_own_referral(client, seeded):
    created = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(seeded["shequyun"])).get_json()
    client.post(f"/api/v1/tickets/{created['number']}/claim", headers=_bearer(seeded["operator"]))

    response = client.get(f"/api/v1/referrals/{REFERRAL['external_id']}",
                          headers={**_bearer(seeded["shequyun"]), "Accept-Language": "zh-CN"})

    assert response.status_code == 200
    view = response.get_json()
    assert view["number"] == created["number"]
    assert view["status"] == "in_progress"
    assert view["status_label"] == "处理中"
    assert view["caller_phone"] == "137****4567"
    assert [(change["from"], change["to"], change["status_label"]) for change in view["history"]] == [
        ("new", "in_progress", "处理中")]
    assert view["history"][0]["at"].endswith("+08:00")
    assert {clock["target"] for clock in view["sla"]} == {"first_response", "resolution"}
    assert "events" not in view, "operators' notes stay inside the hotline"


def test_platform_cannot_read_other_source(client, seeded):
    client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(seeded["community_worker"]))

    response = client.get(f"/api/v1/referrals/{REFERRAL['external_id']}", headers=_bearer(seeded["shequyun"]))

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_staff_token_cannot_read_referral_route(client, seeded):
    response = client.get("/api/v1/referrals/SQY-1", headers=_bearer(seeded["operator"]))

    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
