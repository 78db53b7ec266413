"""`hotline rules simulate`: replay stored tickets against a candidate rule folder, read-only."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import pytest
import time_machine
from click.testing import CliRunner
from sqlalchemy import func
from sqlmodel import select
from web_helpers import refer

from hotline.cli.rules import rules
from hotline.config import DEFAULT_RULES_DIR
from hotline.models import Call, RuleSetVersion, SlaClock, Ticket, TicketEvent
from hotline.rules.loader import rule_set_version
from hotline.rules.simulate import parse_period

DAY_ONE = datetime.fromisoformat("2026-12-01T09:00:00+08:00")
REPORT_TIME = datetime.fromisoformat("2026-12-10T09:00:00+08:00")
PHONE = "13812345678"
CALLER = "+8613812345678"


def candidate(tmp_path, old: str, new: str):
    """A copy of the shipped rules with one text replaced in priority.yaml."""
    target = tmp_path / "candidate"
    shutil.copytree(DEFAULT_RULES_DIR, target)
    path = target / "priority.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return target


def add_rule(tmp_path, rule: str):
    target = tmp_path / "candidate"
    shutil.copytree(DEFAULT_RULES_DIR, target)
    with (target / "priority.yaml").open("a", encoding="utf-8") as handle:
        handle.write(rule)
    return target


def simulate(database_url, rules_dir, *args, language=None):
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_CLI_LANGUAGE": language}
    with time_machine.travel(REPORT_TIME, tick=False):
        return CliRunner().invoke(rules, ["simulate", "--rules", str(rules_dir), *args], env=env,
                                  catch_exceptions=False)


def refer_at(client, token, instant, external_id, **fields):
    with time_machine.travel(instant, tick=False):
        return refer(client, token, external_id, phone=PHONE, **fields)


def row_counts(runtime):
    with runtime.transaction() as session:
        return {model.__name__: session.exec(select(func.count()).select_from(model)).one()
                for model in (Ticket, TicketEvent, SlaClock, Call, RuleSetVersion)}


@pytest.fixture
def day_of_tickets(client, seeded):
    """Three referrals on 1 December: a consultation, a solitary elder's consultation and a body transport."""
    token = seeded["community_worker"]
    return {
        "plain": refer_at(client, token, DAY_ONE, "A"),
        "solitary": refer_at(client, token, DAY_ONE + timedelta(minutes=5), "B", flags=["solitary_elderly"]),
        "transport": refer_at(client, token, DAY_ONE + timedelta(minutes=10), "C", category="agency_service",
                              needs=["body_transport"]),
    }


@pytest.mark.parametrize("text, period", [("30d", timedelta(days=30)), ("7d", timedelta(days=7)),
                                          ("12h", timedelta(hours=12)), (" 1 h ", timedelta(hours=1))])
def test_period_parses(text, period):
    assert parse_period(text) == period


@pytest.mark.parametrize("text", ["0d", "30", "2w", "-1d", "1.5d", ""])
def test_period_rejects(text):
    with pytest.raises(ValueError, match="invalid period"):
        parse_period(text)


def test_priority_and_policy_changes(database_url, runtime, day_of_tickets, tmp_path):
    rules_dir = candidate(tmp_path, "raise: 1", "raise: 2")
    before = row_counts(runtime)

    result = simulate(database_url, rules_dir, "--since", "30d")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"  {day_of_tickets['solitary']}  P2 -> P1  规则 vulnerable-resident" in lines
    assert f"  {day_of_tickets['solitary']}  enquiry -> p1-around-the-clock" in lines
    assert day_of_tickets["plain"] not in result.output
    assert day_of_tickets["transport"] not in result.output
    assert ("汇总：工单 3，优先级变化 1（提升 1，降低 0），队内排序变化 0，SLA 策略变化 1，"
            "无变化 2，评估失败 0") in lines
    assert "按各自的规则集版本重放：3/3 张与存储结果一致" in lines
    assert "优先级变化：1" in lines
    assert row_counts(runtime) == before, "nothing is written"


def test_text_report_in_english(database_url, runtime, day_of_tickets, tmp_path):
    rules_dir = candidate(tmp_path, "raise: 1", "raise: 2")

    result = simulate(database_url, rules_dir, "--since", "30d", language="en")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "Priority changes: 1" in lines
    assert f"  {day_of_tickets['solitary']}  P2 -> P1  rules vulnerable-resident" in lines
    assert ("Summary: tickets 3, priority changes 1 (raised 1, lowered 0), queue rank changes 0, "
            "SLA policy changes 1, unchanged 2, evaluation errors 0") in lines
    assert "Replayed with their own rule set version: 3 of 3 match the stored results" in lines


def test_json_output(database_url, runtime, day_of_tickets, tmp_path):
    rules_dir = candidate(tmp_path, "set: {queue_rank: 10}", "set: {queue_rank: 20}")

    result = simulate(database_url, rules_dir, "--since", "30d", "--format", "json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rule_set"]["version"] == rule_set_version(rules_dir)
    assert report["period"]["until"] == "2026-12-10T09:00:00+08:00"
    assert report["summary"]["tickets"] == 3
    assert report["summary"]["queue_rank_changed"] == 3
    assert report["summary"]["priority_changed"] == 0
    assert report["summary"]["reproduced"] == 3
    change = next(item for item in report["changes"] if item["number"] == day_of_tickets["plain"])
    assert change["queue_rank"] == {"from": 10, "to": 20, "rules": ["referral-first"]}
    assert change["priority"] is None
    assert change["created_at"] == "2026-12-01T09:00:00+08:00"


def test_changed_defaults_named(database_url, runtime, day_of_tickets, tmp_path):
    rules_dir = candidate(tmp_path, "defaults: {priority: P4, queue_rank: 100}",
                          "defaults: {priority: P4, queue_rank: 5}")

    report = json.loads(simulate(database_url, rules_dir, "--format", "json").output)

    assert {change["queue_rank"]["to"] for change in report["changes"]} == {5}
    assert report["changes"][0]["queue_rank"]["rules"] == ["referral-first", "defaults"]


def test_period_limits_tickets(database_url, runtime, client, seeded, day_of_tickets, tmp_path):
    recent = refer_at(client, seeded["community_worker"], REPORT_TIME - timedelta(hours=2), "D",
                      flags=["solitary_elderly"])
    rules_dir = candidate(tmp_path, "raise: 1", "raise: 2")

    last_day = json.loads(simulate(database_url, rules_dir, "--since", "12h", "--format", "json").output)
    last_week = json.loads(simulate(database_url, rules_dir, "--since", "7d", "--format", "json").output)

    assert last_day["summary"]["tickets"] == 1
    assert [change["number"] for change in last_day["changes"]] == [recent]
    assert last_week["summary"]["tickets"] == 1
    assert last_week["period"]["since"] == "2026-12-03T09:00:00+08:00"


def test_caller_history_at_that_time(database_url, runtime, client, seeded, tmp_path):
    token = seeded["community_worker"]
    first = refer_at(client, token, DAY_ONE, "A")
    with runtime.transaction() as session:
        ticket_id = session.exec(select(Ticket.id).where(Ticket.number == first)).one()
        for day in (1, 2):
            session.add(Call(call_sid=f"CA{day}", ticket_id=ticket_id, from_phone=CALLER,
                             started_at=DAY_ONE + timedelta(days=day)))
    second = refer_at(client, token, DAY_ONE + timedelta(days=3), "B")
    with time_machine.travel(DAY_ONE + timedelta(days=4), tick=False):
        headers = {"Authorization": f"Bearer {seeded['operator']}"}
        response = client.post(f"/api/v1/tickets/{first}/transitions", json={"to": "resolved"}, headers=headers)
        assert response.status_code == 200, response.get_json()
    third = refer_at(client, token, DAY_ONE + timedelta(days=5), "C")
    rules_dir = add_rule(tmp_path, """
  - id: calls-twice
    description: 30日内来电2次及以上
    when: calls_last_30_days >= 2
    raise: 1

  - id: caller-has-open-ticket
    description: 来电人另有未办结工单
    when: open_tickets_of_caller >= 1
    set: {queue_rank: 1}
""")

    report = json.loads(simulate(database_url, rules_dir, "--format", "json").output)

    changes = {change["number"]: change for change in report["changes"]}
    assert first not in changes, "the calls came after the first ticket"
    assert changes[second]["priority"] == {"from": "P3", "to": "P2", "rules": ["calls-twice"]}
    assert changes[second]["queue_rank"] == {"from": 10, "to": 1, "rules": ["referral-first", "caller-has-open-ticket"]}
    assert changes[third]["priority"] == {"from": "P3", "to": "P2", "rules": ["calls-twice"]}
    assert changes[third]["queue_rank"]["to"] == 1, "the second ticket was still open"
    assert report["summary"]["reproduced"] == 3


def test_invalid_candidate_lists_errors(database_url, runtime, day_of_tickets, tmp_path):
    rules_dir = candidate(tmp_path, "raise: 1", "raise: 9")
    before = row_counts(runtime)

    result = simulate(database_url, rules_dir, "--since", "30d")

    assert result.exit_code == 1
    line = (rules_dir / "priority.yaml").read_text(encoding="utf-8").splitlines().index("    raise: 9") + 1
    assert f"priority.yaml:{line}: rule vulnerable-resident: raise must be an integer from 1 to 3, not 9" \
        in result.output
    assert "规则文件有 1 处错误" in result.output
    assert row_counts(runtime) == before


def test_invalid_period_rejected(database_url, tmp_path):
    result = simulate(database_url, DEFAULT_RULES_DIR, "--since", "30")

    assert result.exit_code == 2
    assert "时间段 30 无效" in result.output


def test_shipped_rules_change_nothing(database_url, runtime, day_of_tickets):
    result = simulate(database_url, DEFAULT_RULES_DIR)

    assert result.exit_code == 0, result.output
    assert "无变化 3，评估失败 0" in result.output
    assert "3/3 张与存储结果一致" in result.output
