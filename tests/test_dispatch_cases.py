"""The dispatch example tables in routing_rules/tests/dispatch/, and the runner that checks them."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from hotline.cli.rules import rules
from hotline.config import DEFAULT_RULES_DIR
from hotline.dispatch.cases import CASES_DIR, load_dispatch_cases, run_dispatch_case
from hotline.dispatch.config import load_dispatch_config
from hotline.rules.expressions import RuleError

SHIPPED_FILES = sorted((DEFAULT_RULES_DIR / CASES_DIR).glob("*.yaml"))
SHIPPED_CASES = [case for path in SHIPPED_FILES for case in load_dispatch_cases(path)]
CONFIG = load_dispatch_config(DEFAULT_RULES_DIR / "dispatch.yaml")


@pytest.mark.parametrize("case", SHIPPED_CASES, ids=[case.name for case in SHIPPED_CASES])
def test_shipped_dispatch_case(case):
    assert run_dispatch_case(CONFIG, case) == []


def test_wrong_expectation_reported(tmp_path):
    path = tmp_path / "wrong.yaml"
    path.write_text(
        "agencies:\n  - {name: 队伍, kind: funeral_home, towns: ['*'], services: [body_transport], capacity: 1}\n"
        "cases:\n  - name: team busy\n    ticket: {town: 金泽镇, needs: [body_transport]}\n"
        "    busy: {队伍: 1}\n    expect: {target: funeral-home-team, agency: 队伍}\n", encoding="utf-8")
    [case] = load_dispatch_cases(path)

    assert run_dispatch_case(CONFIG, case) == [
        "expected {'target': 'funeral-home-team', 'agency': '队伍'}, got {'escalate': True}"]


def test_held_ticket_reported(tmp_path):
    held = tmp_path / "dispatch.yaml"
    held.write_text("targets:\n  - {id: only-team, kinds: [funeral_home], skip_if: [nobody_eligible]}\n",
                    encoding="utf-8")
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "agencies:\n  - {name: 队伍, kind: funeral_home, towns: ['*'], services: [body_transport], capacity: 1}\n"
        "cases:\n  - name: team busy\n    ticket: {town: 金泽镇, needs: [body_transport]}\n"
        "    busy: {队伍: 1}\n    expect: {hold: only-team}\n", encoding="utf-8")

    [case] = load_dispatch_cases(cases)

    assert run_dispatch_case(load_dispatch_config(held), case) == []


def test_unknown_case_key_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cases:\n  - {name: x, expect: {escalate: true}, weather: rain}\n", encoding="utf-8")

    with pytest.raises(RuleError, match="case 1: unknown keys \\['weather'\\]"):
        load_dispatch_cases(path)


def test_rules_test_command_runs_dispatch_tables(tmp_path):
    rules_dir = tmp_path / "routing_rules"
    shutil.copytree(DEFAULT_RULES_DIR, rules_dir)
    broken = rules_dir / CASES_DIR / "shipped.yaml"
    broken.write_text(broken.read_text(encoding="utf-8").replace(
        "expect: {target: funeral-home-team, agency: 青浦区殡仪馆接运服务队}\n\n  - name: all pilot",
        "expect: {target: pilot-agencies, agency: 青浦区殡仪馆接运服务队}\n\n  - name: all pilot", 1),
        encoding="utf-8")

    passing = CliRunner().invoke(rules, ["test", "--rules", str(DEFAULT_RULES_DIR)])
    failing = CliRunner().invoke(rules, ["test", "--rules", str(rules_dir)])

    assert passing.exit_code == 0, passing.output
    assert failing.exit_code == 1
    assert "non-pilot town goes to the funeral home team" in failing.output
