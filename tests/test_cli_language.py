"""The `hotline` command's language: chosen from the environment, Simplified Chinese unless English is asked for."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hotline.cli import main
from hotline.cli.language import cli_locale, gettext, join, ngettext


@pytest.mark.parametrize("environment, locale", [
    ({}, "zh_Hans_CN"),
    ({"LANG": "C.UTF-8"}, "zh_Hans_CN"),
    ({"LANG": "POSIX"}, "zh_Hans_CN"),
    ({"LANG": "fr_FR.UTF-8"}, "zh_Hans_CN"),
    ({"LANG": "zh_CN.UTF-8"}, "zh_Hans_CN"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "en"}, "en"),
    ({"LC_MESSAGES": "en_GB.ISO-8859-1@euro", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"LC_ALL": "zh_CN.GB18030", "LANG": "en_US.UTF-8"}, "zh_Hans_CN"),
    ({"LC_ALL": "C", "LANG": "en_US.UTF-8"}, "zh_Hans_CN"),
    ({"LANGUAGE": "fr:en_US", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"LANGUAGE": "zh_CN:en", "LC_ALL": "en_US.UTF-8"}, "zh_Hans_CN"),
    ({"HOTLINE_CLI_LANGUAGE": "en", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"HOTLINE_CLI_LANGUAGE": "zh", "LANG": "en_US.UTF-8"}, "zh_Hans_CN"),
    ({"HOTLINE_CLI_LANGUAGE": "de", "LANG": "en_US.UTF-8"}, "en"),
])
def test_locale_from_environment(monkeypatch, environment, locale):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert cli_locale() == locale


def test_messages_follow_the_environment(monkeypatch):
    chinese = gettext("Ticket %(number)s not found.", number="QP-20261207-0001")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    english = gettext("Ticket %(number)s not found.", number="QP-20261207-0001")

    assert chinese == "工单 QP-20261207-0001 不存在。"
    assert english == "Ticket QP-20261207-0001 not found."


def test_plural_and_list_forms(monkeypatch):
    chinese = (ngettext("%(num)d attempt", "%(num)d attempts", 2), join(["a", "b"]))
    monkeypatch.setenv("HOTLINE_CLI_LANGUAGE", "en")
    english = (ngettext("%(num)d attempt", "%(num)d attempts", 1), ngettext("%(num)d attempt", "%(num)d attempts", 2),
               join(["a", "b"]))

    assert chinese == ("尝试 2 次", "a、b")
    assert english == ("1 attempt", "2 attempts", "a, b")


def test_help_switches_language_between_runs():
    chinese = CliRunner().invoke(main, ["tokens", "create", "--help"])
    english = CliRunner().invoke(main, ["tokens", "create", "--help"], env={"HOTLINE_CLI_LANGUAGE": "en"})
    again = CliRunner().invoke(main, ["tokens", "create", "--help"])

    assert chinese.exit_code == 0, chinese.output
    assert "创建 API 令牌，并在标准输出中单独打印" in chinese.output
    assert "令牌所属的转介来源。" in chinese.output
    assert "Create an API token and print it alone on stdout" in english.output
    assert "Referral source the token files under." in english.output
    assert again.output == chinese.output


def test_group_help_lists_subcommands_in_each_language():
    chinese = CliRunner().invoke(main, ["--help"])
    english = CliRunner().invoke(main, ["--help"], env={"LANG": "en_US.UTF-8"})

    assert "SLA 时限：计算截止时间" in chinese.output
    assert "员工与转介人账户。" in chinese.output
    assert "SLA clocks: compute deadlines" in english.output
    assert "Staff and referrer accounts." in english.output


def test_password_prompt_translated(runtime, seeded, database_url, tmp_path):
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_INSTANCE_DIR": str(tmp_path)}

    result = CliRunner().invoke(main, ["users", "create", "wang.li", "--role", "operator"], env=env,
                                input="清明时节雨纷纷-2026\n清明时节雨纷纷-2026\n")

    assert result.exit_code == 0, result.output
    assert "密码: " in result.output
    assert "再次输入密码: " in result.output
