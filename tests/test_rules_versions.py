"""Rule set versions: stored on first use, listed and shown by `hotline rules versions` and `rules show`."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime

import pytest
import time_machine
from click.testing import CliRunner
from sqlmodel import select

from hotline import create_app
from hotline import runtime as runtime_module
from hotline.cli.rules import rules
from hotline.clock import now
from hotline.config import DEFAULT_RULES_DIR
from hotline.models import RuleSetVersion, Ticket
from hotline.queueing import InProcessQueue
from hotline.rules.loader import rule_set_version
from hotline.rules.versions import stored_rule_set
from hotline.runtime import build_runtime

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


def refer(client, token, external_id, **fields):
    body = {"external_id": external_id, "category": "consultation", "needs": [], "flags": [],
            "resident": {"name": "居民", "phone": "13812345678", "town": "金泽镇"}, **fields}
    response = client.post("/api/v1/referrals", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["number"]


def stored_versions(runtime):
    with runtime.transaction() as session:
        return {row.version: row for row in session.exec(select(RuleSetVersion)).all()}


def run_cli(database_url, rules_dir, *args, language=None):
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_RULES_DIR": str(rules_dir), "HOTLINE_CLI_LANGUAGE": language}
    return CliRunner().invoke(rules, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def changed_rules(tmp_path):
    """A copy of the shipped rules whose priority.yaml differs only in one description."""
    target = tmp_path / "changed_rules"
    shutil.copytree(DEFAULT_RULES_DIR, target)
    path = target / "priority.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("description: 需接运遗体", "description: 需要接运遗体"),
                    encoding="utf-8")
    return target


@pytest.fixture
def second_runtime(settings, changed_rules):
    """A runtime on the same database that loaded `changed_rules`, installed in place of the first."""
    built = build_runtime(replace(settings, rules_dir=changed_rules), queue=InProcessQueue())
    previous = runtime_module._current
    runtime_module.install(built)
    yield built
    runtime_module._current = previous
    built.engine.dispose()


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_first_ticket_stores_version(client, seeded, runtime):
    refer(client, seeded["community_worker"], "V1")

    versions = stored_versions(runtime)

    version = rule_set_version(DEFAULT_RULES_DIR)
    assert list(versions) == [version]
    row = versions[version]
    assert row.files["priority.yaml"] == (DEFAULT_RULES_DIR / "priority.yaml").read_text(encoding="utf-8")
    assert sorted(row.files) == sorted(path.name for path in DEFAULT_RULES_DIR.glob("*.yaml"))
    assert row.rules_dir == str(DEFAULT_RULES_DIR)
    assert row.first_used_at == MONDAY_MORNING


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_later_tickets_add_no_row(client, seeded, runtime):
    for index in range(3):
        refer(client, seeded["community_worker"], f"V{index}")

    assert len(stored_versions(runtime)) == 1


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_rolled_back_ticket_stores_nothing(seeded, runtime):
    from hotline.tickets import create_ticket

    with pytest.raises(RuntimeError), runtime.transaction() as session:
        create_ticket(session, runtime, now(), actor="test", channel="phone",
                      source="resident", category="consultation")
        raise RuntimeError("roll back")
    assert stored_versions(runtime) == {}

    with runtime.transaction() as session:
        create_ticket(session, runtime, now(), actor="test", channel="phone",
                      source="resident", category="consultation")
    assert list(stored_versions(runtime)) == [rule_set_version(DEFAULT_RULES_DIR)]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_changed_rules_store_second_version(client, seeded, runtime, second_runtime, changed_rules):
    refer(client, seeded["community_worker"], "OLD")

    second_client = create_app(second_runtime).test_client()
    refer(second_client, seeded["community_worker"], "NEW", needs=["body_transport"], category="agency_service")

    versions = stored_versions(second_runtime)
    assert set(versions) == {rule_set_version(DEFAULT_RULES_DIR), rule_set_version(changed_rules)}
    with second_runtime.transaction() as session:
        new_ticket = session.exec(select(Ticket).where(Ticket.external_id == "NEW")).one()
        assert new_ticket.rule_set_version == rule_set_version(changed_rules)
        old_rules = stored_rule_set(session, rule_set_version(DEFAULT_RULES_DIR))
    assert {rule.id: rule.description for rule in old_rules.rules}["body-transport-urgent"] == "需接运遗体"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_versions_command_lists_counts(client, seeded, runtime, database_url):
    for index in range(2):
        refer(client, seeded["community_worker"], f"L{index}")

    result = run_cli(database_url, DEFAULT_RULES_DIR, "versions")

    assert result.exit_code == 0, result.output
    version = rule_set_version(DEFAULT_RULES_DIR)
    row = next(line for line in result.output.splitlines() if line.startswith(version))
    assert "2026-12-07 09:00" in row
    assert " 2  " in row
    assert "当前目录" in row


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_versions_command_marks_unstored(client, seeded, runtime, database_url):
    refer(client, seeded["community_worker"], "U1")
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket)).one()
        ticket.rule_set_version = "0123456789ab"
        session.add(ticket)

    listed = run_cli(database_url, DEFAULT_RULES_DIR, "versions")
    shown = run_cli(database_url, DEFAULT_RULES_DIR, "show", "0123")

    assert "0123456789ab" in listed.output
    assert "文件未保存" in listed.output
    assert shown.exit_code == 1
    assert "未保存" in shown.output


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_show_prints_files_by_prefix(client, seeded, runtime, database_url):
    refer(client, seeded["community_worker"], "S1")
    version = rule_set_version(DEFAULT_RULES_DIR)

    whole = run_cli(database_url, DEFAULT_RULES_DIR, "show", version[:6])
    single_file = run_cli(database_url, DEFAULT_RULES_DIR, "show", version, "--file", "priority.yaml")

    assert whole.exit_code == 0, whole.output
    assert f"规则集版本 {version}" in whole.output
    for name in ("calendars.yaml", "dispatch.yaml", "priority.yaml", "sla.yaml"):
        assert f"# --- {name} ---" in whole.output
    assert "id: body-transport-urgent" in single_file.output
    assert "# --- sla.yaml ---" not in single_file.output


@pytest.mark.parametrize("argument, message", [("abc", "太短"), ("ffffffff", "不存在")])
def test_show_rejects_unknown_version(database_url, argument, message):
    result = run_cli(database_url, DEFAULT_RULES_DIR, "show", argument)

    assert result.exit_code == 1
    assert message in result.output


@pytest.mark.parametrize("argument, message", [
    ("abc", "Version abc is too short; give at least 4 characters."),
    ("ffffffff", "No version ffffffff; list them with `hotline rules versions`."),
])
def test_show_rejects_unknown_version_in_english(database_url, argument, message):
    result = run_cli(database_url, DEFAULT_RULES_DIR, "show", argument, language="en")

    assert result.exit_code == 1
    assert message in result.output


def test_versions_command_on_empty_database(database_url):
    result = run_cli(database_url, DEFAULT_RULES_DIR, "versions")

    assert result.exit_code == 0
    assert "还没有工单" in result.output


def test_versions_command_missing_sqlite_file(tmp_path):
    result = run_cli(f"sqlite:///{tmp_path / 'absent.sqlite3'}", DEFAULT_RULES_DIR, "versions")

    assert result.exit_code == 1
    assert "数据库文件不存在" in result.output
    assert not (tmp_path / "absent.sqlite3").exists()


def test_broken_rules_stop_runtime(settings, changed_rules):
    (changed_rules / "priority.yaml").write_text("defaults: {priority: P9, queue_rank: 100}\nrules: []\n",
                                                 encoding="utf-8")

    with pytest.raises(ValueError, match=r"priority.yaml:1: .*invalid priority 'P9'"):
        build_runtime(replace(settings, rules_dir=changed_rules), queue=InProcessQueue())
