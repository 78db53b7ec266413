"""Account administration: `hotline users list/unlock/deactivate/activate/reset-password` and the admins'
page /admin/users, with the lockout they clear and the audit rows they write."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
import time_machine
from click.testing import CliRunner
from sqlmodel import select
from web_helpers import PASSWORD, csrf_token, log_in

from hotline import tokens
from hotline.cli import main
from hotline.models import ApiToken, LoginAttempt, User, UserChange
from hotline.web import auth

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


def _cli(settings, *args: str, language: str | None = None):
    env = {"HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_INSTANCE_DIR": str(settings.instance_dir),
           "HOTLINE_CLI_LANGUAGE": language}
    return CliRunner().invoke(main, ["users", *args], env=env)


def _user(runtime, username) -> User:
    with runtime.transaction() as session:
        return session.exec(select(User).where(User.username == username)).one()


def _changes(runtime, username) -> list[tuple[str, str, str | None]]:
    with runtime.transaction() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        rows = session.exec(select(UserChange).where(UserChange.user_id == user.id).order_by(UserChange.id)).all()
        return [(row.action, row.actor, row.remote_addr) for row in rows]


def _token_prefix(runtime, secret) -> str:
    with runtime.transaction() as session:
        return session.exec(select(ApiToken.prefix).where(ApiToken.token_hash == tokens.digest(secret))).one()


def _token_row(runtime, secret) -> ApiToken:
    with runtime.transaction() as session:
        return session.exec(select(ApiToken).where(ApiToken.token_hash == tokens.digest(secret))).one()


def _api_status(client, secret) -> int:
    return client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {secret}"}).status_code


def _lock_out(client, username="operator"):
    for _ in range(5):
        assert log_in(client, username, "wrong-password").status_code == 401
    assert log_in(client, username).status_code == 401, "the right password is refused while locked out"


def _row(page: str, username: str) -> str:
    match = re.search(rf'<tr data-username="{username}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no row for {username}"
    return match.group(1)


@pytest.fixture
def admin(app, seeded):
    client = app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "admin").status_code == 302
    return client


# --- the command line ------------------------------------------------------------------------------


def test_cli_list_shows_state(app, runtime, settings, seeded):
    client = app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "supervisor").status_code == 302
        _lock_out(app.test_client())
        result = _cli(settings, "list")

    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert result.output.splitlines()[0].split() == ["用户名", "姓名", "角色", "账户状态", "锁定至", "最近登录"]
    assert "2026-12-07 09:15" in lines["operator"], "locked for 15 minutes after the fifth failure"
    assert "2026-12-07 09:00" in lines["supervisor"], "last login"
    assert lines["admin"].split()[-2:] == ["-", "-"], "never locked out, never logged in"
    assert "在用" in lines["operator"]
    assert "话务员" in lines["operator"], "the role's label, not its code"


def test_cli_list_in_english(runtime, settings, seeded):
    result = _cli(settings, "list", language="en")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["Username", "Name", "Role", "Account", "Locked", "out", "until", "Last", "login"]
    operator = next(line for line in lines if line.startswith("operator "))
    assert "Operator" in operator
    assert "Active" in operator


def test_cli_unlock_clears_lockout(app, runtime, settings, seeded):
    client = app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        _lock_out(client)
        result = _cli(settings, "unlock", "operator", "--by", "admin")
        again = _cli(settings, "unlock", "operator", "--by", "admin")
        login = log_in(client, "operator")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "已解除 operator 的登录锁定。"
    assert again.output.strip() == "operator 未被锁定。"
    assert login.status_code == 302, "the lockout no longer applies"
    admin_id = _user(runtime, "admin").id
    assert _changes(runtime, "operator") == [("unlocked", f"user:{admin_id}", None)]
    with runtime.transaction() as session:
        outcomes = [row.outcome for row in session.exec(select(LoginAttempt).order_by(LoginAttempt.id)).all()]
    assert outcomes[-2:] == ["unlocked", "ok"]


def test_unlock_then_five_failures_lock_again(app, runtime, settings, seeded):
    client = app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        _lock_out(client)
        traveller.shift(timedelta(minutes=1))
        assert _cli(settings, "unlock", "operator", "--by", "admin").exit_code == 0
        for _ in range(4):
            log_in(client, "operator", "wrong-password")
        fourth = log_in(client, "operator")
        assert fourth.status_code == 302, "four new failures do not lock"
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
        traveller.shift(timedelta(minutes=1))
        for _ in range(5):
            log_in(client, "operator", "wrong-password")
        locked = log_in(client, "operator")

    assert locked.status_code == 401


def test_cli_needs_an_active_admin(runtime, settings, seeded):
    missing = _cli(settings, "unlock", "operator")
    by_operator = _cli(settings, "deactivate", "supervisor", "--by", "operator")
    unknown = _cli(settings, "activate", "nobody", "--by", "admin")

    assert missing.exit_code == 2
    assert "--by" in missing.output
    assert by_operator.exit_code == 1
    assert "operator 不是在用的管理员账户。" in by_operator.output
    assert unknown.exit_code == 1
    assert "用户 nobody 不存在" in unknown.output
    assert _user(runtime, "supervisor").active is True
    assert _changes(runtime, "supervisor") == []


def test_cli_deactivate_and_activate(app, runtime, settings, seeded):
    client = app.test_client()
    prefix = _token_prefix(runtime, seeded["operator"])
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(client, "operator").status_code == 302
        deactivated = _cli(settings, "deactivate", "operator", "--by", "admin")
        session_after = client.get("/")
        refused = log_in(app.test_client(), "operator")
        twice = _cli(settings, "deactivate", "operator", "--by", "admin")
        activated = _cli(settings, "activate", "operator", "--by", "admin")
        allowed = log_in(app.test_client(), "operator")

    assert deactivated.exit_code == 0, deactivated.output
    assert deactivated.output.splitlines() == ["operator 已停用，不能再登录；其所有已登录会话均已结束。",
                                               f"已吊销 operator 的 1 个 API 令牌：{prefix}。"]
    assert session_after.status_code == 302
    assert session_after.location.startswith("/login"), "the open session ended"
    assert refused.status_code == 401
    assert twice.output.strip() == "operator 本已停用。"
    assert activated.output.splitlines()[0] == "operator 已重新启用。"
    assert "其 1 个已吊销的 API 令牌仍保持吊销" in activated.output
    assert allowed.status_code == 302
    admin_id = _user(runtime, "admin").id
    assert _changes(runtime, "operator") == [("deactivated", f"user:{admin_id}", None),
                                             ("token_revoked", f"user:{admin_id}", None),
                                             ("activated", f"user:{admin_id}", None)]


def test_cli_deactivate_in_english(runtime, settings, seeded):
    prefix = _token_prefix(runtime, seeded["operator"])

    deactivated = _cli(settings, "deactivate", "operator", "--by", "admin", language="en")
    activated = _cli(settings, "activate", "operator", "--by", "admin", language="en")

    assert deactivated.output.splitlines() == [
        "operator is deactivated and can no longer log in; every open session has ended.",
        f"Revoked 1 API token of operator: {prefix}."]
    assert activated.output.splitlines() == [
        "operator is active again.",
        "Its 1 revoked API token stays revoked; `hotline tokens create --role ROLE --user operator` issues a new one."]


def test_cli_admin_cannot_deactivate_self(runtime, settings, seeded):
    result = _cli(settings, "deactivate", "admin", "--by", "admin")
    english = _cli(settings, "deactivate", "admin", "--by", "admin", language="en")

    assert result.exit_code == 1
    assert "不能停用自己的账户。" in result.output
    assert "You cannot deactivate your own account." in english.output
    assert _user(runtime, "admin").active is True


def test_cli_reset_password_prints_it_once(app, runtime, settings, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        result = _cli(settings, "reset-password", "operator", "--by", "admin")
        password = result.output.strip().rsplit("：", 1)[1]
        old = log_in(app.test_client(), "operator", PASSWORD)
        new = log_in(app.test_client(), "operator", password)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "operator 已登录的会话已全部结束。"
    assert result.output.splitlines()[1].startswith("operator 的新密码（只显示这一次）：")
    assert len(password) >= 16
    assert old.status_code == 401
    assert new.status_code == 302
    assert password not in _user(runtime, "operator").password_hash
    assert [action for action, _actor, _addr in _changes(runtime, "operator")] == ["password_reset"]


# --- the admin page --------------------------------------------------------------------------------


def test_admin_page_lists_accounts(admin, app, runtime, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        _lock_out(app.test_client())
        page = admin.get("/admin/users").get_data(as_text=True)

    operator = _row(page, "operator")
    assert "话务员 王丽" in operator
    assert "话务员" in operator
    assert "在用" in operator
    assert "2026-12-07 09:15" in operator, "locked out until"
    assert "解除锁定" in operator
    assert "停用" in operator
    assert "2026-12-07 09:00" in _row(page, "admin"), "the admin's own last login"
    assert "停用</button>" not in _row(page, "admin"), "no button to deactivate oneself"
    assert "从未登录" in _row(page, "supervisor")


def test_admin_page_unlocks_and_deactivates(admin, app, runtime, seeded):
    operator_id = _user(runtime, "operator").id
    with time_machine.travel(MONDAY_MORNING, tick=False):
        _lock_out(app.test_client())
        token = csrf_token(admin, "/admin/users")
        unlocked = admin.post(f"/admin/users/{operator_id}/unlock", data={"csrf_token": token})
        unlocked_page = admin.get(unlocked.location).get_data(as_text=True)
        login = log_in(app.test_client(), "operator")
        deactivated = admin.post(f"/admin/users/{operator_id}/deactivate", data={"csrf_token": token})
        deactivated_page = admin.get(deactivated.location).get_data(as_text=True)
        activated = admin.post(f"/admin/users/{operator_id}/activate", data={"csrf_token": token})

    assert unlocked.status_code == 302
    assert "已解除 operator 的登录锁定。" in unlocked_page
    assert login.status_code == 302
    assert "operator 已停用，不能再登录；其所有已登录会话均已结束。" in deactivated_page
    assert f"已吊销 operator 的 API 令牌，立即失效：{_token_prefix(runtime, seeded['operator'])}。" in deactivated_page
    assert "已停用" in _row(deactivated_page, "operator")
    assert activated.status_code == 302
    assert _user(runtime, "operator").active is True
    admin_id = _user(runtime, "admin").id
    assert _changes(runtime, "operator") == [("unlocked", f"user:{admin_id}", "127.0.0.1"),
                                             ("deactivated", f"user:{admin_id}", "127.0.0.1"),
                                             ("token_revoked", f"user:{admin_id}", "127.0.0.1"),
                                             ("activated", f"user:{admin_id}", "127.0.0.1")]


def test_admin_page_refuses_own_deactivation(admin, runtime, seeded):
    admin_id = _user(runtime, "admin").id
    with time_machine.travel(MONDAY_MORNING, tick=False):
        response = admin.post(f"/admin/users/{admin_id}/deactivate",
                              data={"csrf_token": csrf_token(admin, "/admin/users")})
        page = admin.get(response.location).get_data(as_text=True)

    assert "不能停用自己的账户。" in page
    assert _user(runtime, "admin").active is True
    assert _changes(runtime, "admin") == []


def test_admin_page_for_admins_only(app, client, runtime, seeded):
    operator_id = _user(runtime, "operator").id
    anonymous = client.get("/admin/users")
    with time_machine.travel(MONDAY_MORNING, tick=False):
        for username in ("operator", "supervisor"):
            staff = app.test_client()
            log_in(staff, username)
            token = csrf_token(staff, "/")
            assert staff.get("/admin/users").status_code == 403, username
            assert staff.post(f"/admin/users/{operator_id}/deactivate",
                              data={"csrf_token": token}).status_code == 403, username

    assert anonymous.status_code == 302
    assert anonymous.location.startswith("/login")
    assert _user(runtime, "operator").active is True


def test_admin_page_forms_need_csrf(admin, runtime, seeded):
    operator_id = _user(runtime, "operator").id

    response = admin.post(f"/admin/users/{operator_id}/deactivate")

    assert response.status_code == 400
    assert _user(runtime, "operator").active is True


def test_admin_page_unknown_user_404(admin, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        response = admin.post("/admin/users/99999/unlock", data={"csrf_token": csrf_token(admin, "/admin/users")})

    assert response.status_code == 404


def test_login_records_name_the_unlock(admin, app, runtime, settings, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        _lock_out(app.test_client())
        assert _cli(settings, "unlock", "operator", "--by", "admin").exit_code == 0
        page = admin.get("/audit/logins").get_data(as_text=True)

    assert "管理员解除锁定" in page


# --- sessions and API tokens of a deactivated or reset account ----------------------------------------


def _tokens_cli(settings, *args: str):
    env = {"HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_INSTANCE_DIR": str(settings.instance_dir)}
    return CliRunner().invoke(main, ["tokens", *args], env=env)


def _live_token_names(runtime) -> list[str]:
    with runtime.transaction() as session:
        return sorted(session.exec(select(ApiToken.name).where(ApiToken.revoked_at.is_(None))).all())


def test_deactivation_stops_tokens_at_once(client, runtime, settings, seeded):
    live_before = _live_token_names(runtime)
    with time_machine.travel(MONDAY_MORNING, tick=False):
        before = _api_status(client, seeded["operator"])
        assert _cli(settings, "deactivate", "operator", "--by", "admin").exit_code == 0
        after = _api_status(client, seeded["operator"])
        other_user = _api_status(client, seeded["supervisor"])
        assert _cli(settings, "activate", "operator", "--by", "admin").exit_code == 0
        after_activation = _api_status(client, seeded["operator"])

    assert before == 200
    assert after == 401
    assert other_user == 200, "another user's token keeps working"
    assert after_activation == 401, "activation does not bring the revoked token back"
    token = _token_row(runtime, seeded["operator"])
    assert token.revoked_at == MONDAY_MORNING
    assert _live_token_names(runtime) == [name for name in live_before if name != "operator"]
    with runtime.transaction() as session:
        [row] = session.exec(select(UserChange).where(UserChange.action == "token_revoked")).all()
    assert row.user_id == _user(runtime, "operator").id
    assert row.detail == f"{token.prefix} (operator)"


def test_revoked_token_listed_by_cli_and_page(admin, runtime, settings, seeded):
    token = _token_row(runtime, seeded["operator"])
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert _cli(settings, "deactivate", "operator", "--by", "admin").exit_code == 0
        listed = _tokens_cli(settings, "list")
        page = admin.get("/admin/tokens").get_data(as_text=True)

    row = next(line for line in listed.output.splitlines() if line.startswith(token.prefix))
    assert row.endswith("2026-12-07 09:00"), "the REVOKED column shows the deactivation"
    match = re.search(rf'<tr id="token-{token.id}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, "the token is listed on /admin/tokens"
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", match.group(1), re.S)]
    assert cells[6] == "2026-12-07 09:00", "the revoked column shows the deactivation"


def test_token_for_inactive_user_rejected(runtime, settings, seeded):
    assert _cli(settings, "deactivate", "operator", "--by", "admin").exit_code == 0
    count_before = len(_live_token_names(runtime))

    result = _tokens_cli(settings, "create", "--role", "operator", "--user", "operator")

    assert result.exit_code == 1
    assert "用户 operator 已停用" in result.output
    assert len(_live_token_names(runtime)) == count_before


def test_reset_password_ends_every_session(app, runtime, settings, seeded):
    first, second, supervisor = app.test_client(), app.test_client(), app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(first, "operator").status_code == 302
        assert log_in(second, "operator").status_code == 302
        assert log_in(supervisor, "supervisor").status_code == 302
        result = _cli(settings, "reset-password", "operator", "--by", "admin", language="en")
        password = result.output.strip().rsplit(": ", 1)[1]
        ended = [client.get("/") for client in (first, second)]
        other_user = supervisor.get("/")
        fresh = app.test_client()
        assert log_in(fresh, "operator", password).status_code == 302
        fresh_page = fresh.get("/")

    for response in ended:
        assert response.status_code == 302
        assert response.location.startswith("/login")
    assert other_user.status_code == 200, "another user's session goes on"
    assert fresh_page.status_code == 200, "a login with the new password starts a working session"
    assert _user(runtime, "operator").session_version == 1
    assert _user(runtime, "supervisor").session_version == 0


def test_reset_password_keeps_api_tokens(client, runtime, settings, seeded):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert _cli(settings, "reset-password", "operator", "--by", "admin").exit_code == 0
        status = _api_status(client, seeded["operator"])

    assert status == 200, "a password reset ends sessions, not API tokens"


def test_reactivation_keeps_old_sessions_ended(app, runtime, settings, seeded):
    old = app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(old, "operator").status_code == 302
        assert _cli(settings, "deactivate", "operator", "--by", "admin").exit_code == 0
        assert _cli(settings, "activate", "operator", "--by", "admin").exit_code == 0
        old_page = old.get("/")
        new = app.test_client()
        assert log_in(new, "operator").status_code == 302
        new_page = new.get("/")

    assert old_page.status_code == 302
    assert old_page.location.startswith("/login"), "a session from before the deactivation stays ended"
    assert new_page.status_code == 200


def test_admin_page_activation_keeps_tokens_revoked(admin, app, runtime, seeded):
    operator_id = _user(runtime, "operator").id
    operator = app.test_client()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert log_in(operator, "operator").status_code == 302
        token = csrf_token(admin, "/admin/users")
        admin.post(f"/admin/users/{operator_id}/deactivate", data={"csrf_token": token})
        activated = admin.post(f"/admin/users/{operator_id}/activate", data={"csrf_token": token})
        page = admin.get(activated.location).get_data(as_text=True)
        operator_page = operator.get("/")
        api_status = _api_status(app.test_client(), seeded["operator"])

    assert "operator 已重新启用。" in page
    assert "此前吊销的 API 令牌仍为吊销状态" in page
    assert operator_page.status_code == 302, "the session opened before the deactivation stays ended"
    assert api_status == 401


def test_session_without_version_ends_after_reset(app, runtime, settings, seeded):
    operator_id = _user(runtime, "operator").id
    client = app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = str(operator_id)
        cookie["_fresh"] = True

    with time_machine.travel(MONDAY_MORNING, tick=False):
        before = client.get("/")
        assert _cli(settings, "reset-password", "operator", "--by", "admin").exit_code == 0
        after = client.get("/")

    assert before.status_code == 200, "a session from before versions were stored works while the version is 0"
    assert after.status_code == 302
    assert after.location.startswith("/login")


def test_load_user_rejects_malformed_ids(app, runtime, seeded):
    operator_id = _user(runtime, "operator").id

    with app.app_context():
        assert auth.load_user(f"{operator_id}:0").username == "operator"
        assert auth.load_user(f"{operator_id}:0").get_id() == f"{operator_id}:0"
        for session_id in (f"{operator_id}:", f"{operator_id}:x", f"{operator_id}:1", f"{operator_id}:-1", "x:0",
                           ":0", ""):
            assert auth.load_user(session_id) is None, session_id
