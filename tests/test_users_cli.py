"""`hotline users create`: the password rule."""

from __future__ import annotations

from click.testing import CliRunner
from sqlmodel import select

from hotline.cli.admin import users
from hotline.models import User


def _create(database_url, tmp_path, password, **extra_env):
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_INSTANCE_DIR": str(tmp_path), **extra_env}
    return CliRunner().invoke(users, ["create", "wang.li", "--role", "operator", "--password", password], env=env)


def test_short_password_rejected(runtime, seeded, database_url, tmp_path):
    empty = _create(database_url, tmp_path, "")
    short = _create(database_url, tmp_path, "abc123")

    assert empty.exit_code == 2
    assert short.exit_code == 2
    assert "密码至少 10 个字符" in short.output
    with runtime.transaction() as session:
        assert session.exec(select(User).where(User.username == "wang.li")).first() is None


def test_short_password_message_in_english(runtime, seeded, database_url, tmp_path):
    result = _create(database_url, tmp_path, "abc123", LANG="en_US.UTF-8")

    assert result.exit_code == 2
    assert "Use at least 10 characters." in result.output


def test_created_account_confirmed(runtime, seeded, database_url, tmp_path):
    chinese = _create(database_url, tmp_path, "清明时节雨纷纷-2026")
    english = _create(database_url, tmp_path, "清明时节雨纷纷-2026", HOTLINE_CLI_LANGUAGE="en")

    assert chinese.output == "已创建话务员账户 wang.li。\n"
    assert english.exit_code == 1
    assert "User wang.li already exists." in english.output


def test_long_password_accepted(runtime, seeded, database_url, tmp_path):
    result = _create(database_url, tmp_path, "清明时节雨纷纷-2026")

    assert result.exit_code == 0, result.output


def test_longest_role_name_fits(runtime, seeded, database_url, tmp_path):
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_INSTANCE_DIR": str(tmp_path)}

    result = CliRunner().invoke(users, ["create", "zhou.min", "--role", "assistance_advisor", "--town", "盈浦街道",
                                        "--committee", "复兴居委", "--phone", "13700000002",
                                        "--password", "清明时节雨纷纷-2026"], env=env)

    assert result.exit_code == 0, result.output
    with runtime.transaction() as session:
        assert session.exec(select(User.role).where(User.username == "zhou.min")).one() == "assistance_advisor"
