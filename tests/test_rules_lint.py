"""`hotline rules check` finds unknown values, dead, conflicting and repeated rules, with file:line."""

from __future__ import annotations

import shutil

import pytest

from hotline.cli.rules import check_rule_files
from hotline.config import DEFAULT_RULES_DIR

HEADER = "defaults: {priority: P4, queue_rank: 100}\nrules:\n"
BASE = """  - id: agency-base
    description: 代理服务
    when: category == "agency_service"
    set: {priority: P2}
"""


def _check(tmp_path, rules_text):
    shutil.copytree(DEFAULT_RULES_DIR, tmp_path / "rules")
    (tmp_path / "rules" / "priority.yaml").write_text(HEADER + BASE + rules_text, encoding="utf-8")
    return "\n".join(check_rule_files(tmp_path / "rules"))


@pytest.mark.parametrize("rule, message", [
    ('  - id: typo\n    description: 笔误\n    when: category == "agency"\n    set: {priority: P1}\n',
     "priority.yaml:7: rule typo: condition compares category with unknown value 'agency'"),
    ('  - id: typo\n    description: 笔误\n    when: \'"body" in needs\'\n    raise: 1\n',
     "priority.yaml:7: rule typo: condition compares needs with unknown value 'body'"),
    ('  - id: typo\n    description: 笔误\n    when: source in ["shequyun", "wechat"]\n    raise: 1\n',
     "condition compares source with unknown value 'wechat'"),
    ('  - id: dead\n    description: 停用\n    when: "false"\n    raise: 1\n',
     "priority.yaml:7: rule dead: condition is always false"),
    ('  - id: rival\n    description: 冲突\n    when: category  ==  "agency_service"\n    set: {priority: P1}\n',
     "priority.yaml:7: rule rival: same condition as rule agency-base (line 3) but sets priority P1 where it sets P2"),
    ('  - id: twin\n    description: 重复\n    when: category == "agency_service"\n    set: {priority: P2}\n',
     "priority.yaml:7: rule twin: repeats rule agency-base (line 3)"),
])
def test_problem_reported_with_line(tmp_path, rule, message):
    assert message in _check(tmp_path, rule)


def test_known_values_and_different_conditions_pass(tmp_path):
    errors = _check(tmp_path, '  - id: urgent\n    description: 接运\n'
                              '    when: \'"body_transport" in needs and source in ["shequyun", "resident"]\'\n'
                              '    set: {priority: P1}\n')

    assert errors == ""


def test_shipped_rules_pass():
    assert check_rule_files(DEFAULT_RULES_DIR) == []
