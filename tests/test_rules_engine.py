"""The priority rule engine: how rules combine, how rule files are validated, and the rule set version."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from hotline.models import Ticket, Town
from hotline.rules.expressions import TICKET_FACTS, RuleError
from hotline.rules.facts import facts_with_defaults, ticket_facts
from hotline.rules.loader import load_cases, load_rule_set, rule_set_version, run_case


def write_rules(rules_dir: Path, body: str) -> Path:
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "priority.yaml").write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return rules_dir


def rule_yaml(rule_id: str, when: str, effect: str, description: str = "测试规则") -> str:
    return f"""
  - id: {rule_id}
    description: {description}
    when: '{when}'
    {effect}
"""


def rule_file(*rules: str, defaults: str = "{priority: P4, queue_rank: 100}") -> str:
    return f"defaults: {defaults}\nrules:" + "".join(rules)


def evaluate(tmp_path: Path, body: str, **facts):
    rule_set = load_rule_set(write_rules(tmp_path / "rules", body))
    return rule_set.evaluate_priority(facts_with_defaults(facts))


def load_error(tmp_path: Path, body: str) -> str:
    rules_dir = write_rules(tmp_path / "rules", body)
    with pytest.raises(RuleError) as caught:
        load_rule_set(rules_dir)
    return str(caught.value)


SET_P2 = rule_yaml("set-p2", 'category == "consultation"', "set: {priority: P2}")
SET_P1 = rule_yaml("set-p1", '"body_transport" in needs', "set: {priority: P1}")
SET_P3 = rule_yaml("set-p3", 'category == "consultation"', "set: {priority: P3}")
RAISE_1 = rule_yaml("raise-one", '"low_income" in flags', "raise: 1")
RAISE_2 = rule_yaml("raise-two", '"solitary_elderly" in flags', "raise: 2")


# --- semantics -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [(SET_P2, SET_P1), (SET_P1, SET_P2)], ids=["p2-first", "p1-first"])
def test_most_urgent_set_wins_in_any_order(tmp_path, order):
    decision = evaluate(tmp_path, rule_file(*order), category="consultation", needs=["body_transport"])

    assert decision.priority == 1
    assert [reason["rule"] for reason in decision.reasons] == ["set-p1"]


def test_set_never_lowers_the_default(tmp_path):
    body = rule_file(rule_yaml("set-p4", "true", "set: {priority: P4}"), defaults="{priority: P2, queue_rank: 100}")

    decision = evaluate(tmp_path, body)

    assert decision.priority == 2
    assert decision.reasons == []
    assert decision.trace == [{"rule": "set-p4", "matched": True, "changes": {}}]


@pytest.mark.parametrize("order", [(RAISE_1, SET_P3), (SET_P3, RAISE_1)], ids=["raise-first", "set-first"])
def test_raise_applies_after_every_set(tmp_path, order):
    decision = evaluate(tmp_path, rule_file(*order), category="consultation", flags=["low_income"])

    assert decision.priority == 2
    assert {reason["rule"]: reason["effect"] for reason in decision.reasons} == {
        "set-p3": "priority P3",
        "raise-one": "raise 1 to P2",
    }


@pytest.mark.parametrize("order", [(RAISE_1, RAISE_2, SET_P3), (SET_P3, RAISE_2, RAISE_1)], ids=["a", "b"])
def test_raises_are_capped_at_p1(tmp_path, order):
    decision = evaluate(tmp_path, rule_file(*order), category="consultation", flags=["low_income", "solitary_elderly"])

    assert decision.priority == 1
    applied = sum(step["changes"].get("raise", 0) for step in decision.trace)
    assert applied == 2


def test_raise_counts_once_per_rule(tmp_path):
    either_flag = rule_yaml("either-flag", '"low_income" in flags or "solitary_elderly" in flags', "raise: 1")

    decision = evaluate(tmp_path, rule_file(SET_P3, either_flag), category="consultation",
                        flags=["low_income", "solitary_elderly"])

    assert decision.priority == 2


def test_queue_rank_keeps_lowest(tmp_path):
    body = rule_file(
        rule_yaml("rank-50", "true", "set: {queue_rank: 50}"),
        rule_yaml("rank-10", "is_referral", "set: {queue_rank: 10}"),
        rule_yaml("rank-30", "not is_referral", "set: {queue_rank: 30}"),
    )

    assert evaluate(tmp_path, body, source="community_worker").queue_rank == 10
    assert evaluate(tmp_path, body, source="resident").queue_rank == 30


def test_queue_rank_above_default_is_ignored(tmp_path):
    body = rule_file(rule_yaml("rank-200", "true", "set: {queue_rank: 200}"))

    decision = evaluate(tmp_path, body)

    assert decision.queue_rank == 100
    assert decision.reasons == []


def test_add_tags_reports_only_new_tags(tmp_path):
    body = rule_file(rule_yaml("tag-it", "true", "add_tags: [repeat_caller, watch]"))

    decision = evaluate(tmp_path, body, tags=["watch"])

    assert decision.added_tags == ["repeat_caller"]
    assert decision.priority == 4
    assert decision.reasons[0]["effect"] == "add_tags repeat_caller"


def test_conditions_do_not_see_added_tags(tmp_path):
    body = rule_file(
        rule_yaml("reads-tag", '"watch" in tags', "set: {priority: P1}"),
        rule_yaml("adds-tag", "true", "add_tags: [watch]"),
    )

    decision = evaluate(tmp_path, body)

    assert decision.priority == 4
    assert decision.added_tags == ["watch"]


def test_reason_texts_name_rule(tmp_path):
    rule = rule_yaml("body-transport-urgent", '"body_transport" in needs', "set: {priority: P1}\n    "
                     "description_en: Body transport needed", description="需接运遗体")

    decision = evaluate(tmp_path, rule_file(rule), needs=["body_transport"])

    assert decision.reasons == [{
        "rule": "body-transport-urgent",
        "description": "需接运遗体",
        "effect": "priority P1",
        "text_zh": "P1：需接运遗体（规则 body-transport-urgent）",
        "text_en": "P1: Body transport needed (rule body-transport-urgent)",
    }]


def test_trace_lists_every_rule(tmp_path):
    decision = evaluate(tmp_path, rule_file(SET_P2, SET_P1, RAISE_1), category="consultation")

    assert decision.trace == [
        {"rule": "set-p2", "matched": True, "changes": {"priority": "P2"}},
        {"rule": "set-p1", "matched": False, "changes": {}},
        {"rule": "raise-one", "matched": False, "changes": {}},
    ]


def test_repeated_decision_is_independent_copy(tmp_path):
    rule_set = load_rule_set(write_rules(tmp_path / "rules", rule_file(
        SET_P2, RAISE_1, rule_yaml("tag-it", "true", "add_tags: [watch]"))))
    facts = facts_with_defaults({"category": "consultation", "flags": ["low_income"]})

    first = rule_set.evaluate_priority(facts)
    first.reasons[0]["text_zh"] = "changed"
    first.trace[2]["changes"]["add_tags"].append("changed")
    first.added_tags.clear()
    again = rule_set.evaluate_priority(facts)

    assert again == rule_set.evaluate_priority(facts, compiled=False)
    assert again.reasons[0]["text_zh"] != "changed"
    assert again.trace[2]["changes"]["add_tags"] == ["watch"]
    assert again.added_tags == ["watch"]
    assert again.priority == 1


def test_rule_engine_decision_not_shared_by_equal_numbers(tmp_path):
    # rule-engine evaluates this condition, since it has no closure, and distinguishes the int 3 from 3.0.
    rule_set = load_rule_set(write_rules(tmp_path / "rules", rule_file(
        rule_yaml("text-of-priority", 'priority.to_str == "3"', "set: {priority: P1}"))))
    facts = facts_with_defaults({})

    as_float = rule_set.evaluate_priority({**facts, "priority": 3.0})
    as_int = rule_set.evaluate_priority({**facts, "priority": 3})

    assert as_float.priority == 4
    assert as_int.priority == 1


def test_missing_facts_are_rejected(tmp_path):
    rule_set = load_rule_set(write_rules(tmp_path / "rules", rule_file(SET_P1)))

    with pytest.raises(ValueError, match="missing needs"):
        rule_set.evaluate_priority({name: "" for name in TICKET_FACTS if name != "needs"})


def test_decision_carries_rule_set_version(tmp_path):
    rules_dir = write_rules(tmp_path / "rules", rule_file(SET_P1))

    decision = load_rule_set(rules_dir).evaluate_priority(facts_with_defaults({}))

    assert decision.version == rule_set_version(rules_dir)


# --- validation ----------------------------------------------------------------------------------------

VALID_RULE = """
  - id: ok-rule
    description: 测试
    when: 'true'
    set: {priority: P2}
"""

# (name, rule file, line of the error, fragment of the message)
INVALID_FILES = [
    ("unknown top-level key", "defaults: {priority: P4, queue_rank: 100}\nrule: []\n", 2, "unknown key 'rule'"),
    ("missing rules", "defaults: {priority: P4, queue_rank: 100}\n", 1, "missing key 'rules'"),
    ("bad default priority", "defaults: {priority: P0, queue_rank: 100}\nrules: []\n", 1,
     "defaults: invalid priority 'P0'"),
    ("unknown rule key", rule_file(VALID_RULE, "\n  - id: typo\n    description: x\n    when: 'true'\n"
                                               "    sett: {priority: P1}\n"), 11, "rule typo: unknown key 'sett'"),
    ("missing id", rule_file(VALID_RULE, "\n  - description: x\n    when: 'true'\n    raise: 1\n"), 8,
     "rule #2: missing key 'id'"),
    ("missing when", rule_file("\n  - id: no-when\n    description: x\n    raise: 1\n"), 3,
     "rule no-when: missing key 'when'"),
    ("duplicate id", rule_file(VALID_RULE, VALID_RULE), 8, "rule ok-rule: duplicate id, first used on line 3"),
    ("invalid id", rule_file("\n  - id: Bad_Id\n    description: x\n    when: 'true'\n    raise: 1\n"), 3,
     "invalid id 'Bad_Id'"),
    ("priority out of range", rule_file(rule_yaml("p5", "true", "set: {priority: P5}")), 6,
     "rule p5: set: invalid priority 'P5'; expected one of P1, P2, P3, P4"),
    ("priority as number", rule_file(rule_yaml("p-one", "true", "set: {priority: 1}")), 6,
     "rule p-one: set: invalid priority 1"),
    ("raise not an integer", rule_file(rule_yaml("half", "true", "raise: 1.5")), 6,
     "rule half: raise must be an integer from 1 to 3, not 1.5"),
    ("raise as text", rule_file(rule_yaml("word", "true", "raise: one")), 6, "rule word: raise must be an integer"),
    ("raise zero", rule_file(rule_yaml("zero", "true", "raise: 0")), 6, "rule zero: raise must be an integer from 1"),
    ("raise true", rule_file(rule_yaml("raise-true", "true", "raise: true")), 6,
     "rule raise-true: raise must be an integer"),
    ("negative queue rank", rule_file(rule_yaml("neg", "true", "set: {queue_rank: -1}")), 6,
     "rule neg: set.queue_rank must be an integer of at least 0"),
    ("unknown set key", rule_file(rule_yaml("set-typo", "true", "set: {priorty: P1}")), 6,
     "rule set-typo: set: unknown key 'priorty'"),
    ("condition syntax", rule_file(rule_yaml("broken", '"a" in', "raise: 1")), 5,
     "rule broken: syntax error in condition"),
    ("condition unknown name", rule_file(rule_yaml("typo-name", '"x" in need', "raise: 1")), 5,
     "rule typo-name: unknown name 'need'"),
    ("no effect", rule_file("\n  - id: idle\n    description: x\n    when: 'true'\n"), 3, "rule idle: no effect"),
    ("bad tag", rule_file(rule_yaml("tagger", "true", "add_tags: [Repeat Caller]")), 6,
     "rule tagger: add_tags: invalid value 'Repeat Caller'"),
    ("duplicate yaml key", rule_file("\n  - id: twice\n    description: x\n    when: 'true'\n    when: 'false'\n"
                                     "    raise: 1\n"), 6, "rule twice: duplicate key 'when'"),
    ("invalid yaml", "defaults: {priority: P4, queue_rank: 100}\nrules:\n  - id: [unclosed\n", 4, "invalid YAML"),
    ("empty file", "", 1, "file is empty"),
]


@pytest.mark.parametrize(("body", "line", "fragment"), [case[1:] for case in INVALID_FILES],
                         ids=[case[0] for case in INVALID_FILES])
def test_invalid_rule_file_names_line(tmp_path, body, line, fragment):
    message = load_error(tmp_path, body)

    assert f"priority.yaml:{line}: " in message
    assert fragment in message


def test_every_error_is_reported(tmp_path):
    body = rule_file(rule_yaml("p5", "true", "set: {priority: P5}"), rule_yaml("half", "true", "raise: 1.5"))

    lines = load_error(tmp_path, body).splitlines()

    assert len(lines) == 2
    assert re.search(r"priority\.yaml:6: rule p5: ", lines[0])
    assert re.search(r"priority\.yaml:11: rule half: ", lines[1])


def test_missing_priority_file(tmp_path):
    with pytest.raises(RuleError, match=r"priority\.yaml: file not found"):
        load_rule_set(tmp_path)


def test_missing_rules_directory(tmp_path):
    with pytest.raises(RuleError, match="rules directory not found"):
        load_rule_set(tmp_path / "absent")


# --- version -------------------------------------------------------------------------------------------

def test_version_is_twelve_hex_digits(tmp_path):
    rules_dir = write_rules(tmp_path, rule_file(SET_P1))

    version = rule_set_version(rules_dir)

    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert load_rule_set(rules_dir).version == version


def test_version_changes_with_priority_file(tmp_path):
    rules_dir = write_rules(tmp_path, rule_file(SET_P1))
    before = rule_set_version(rules_dir)

    write_rules(tmp_path, rule_file(SET_P2))

    assert rule_set_version(rules_dir) != before


def test_version_changes_with_other_yaml(tmp_path):
    rules_dir = write_rules(tmp_path, rule_file(SET_P1))
    before = rule_set_version(rules_dir)

    (rules_dir / "sla.yaml").write_text("policies: []\n", encoding="utf-8")

    assert rule_set_version(rules_dir) != before


def test_version_ignores_cases_and_other_files(tmp_path):
    rules_dir = write_rules(tmp_path, rule_file(SET_P1))
    before = rule_set_version(rules_dir)

    (rules_dir / "tests").mkdir()
    (rules_dir / "tests" / "priority.yaml").write_text("cases: []\n", encoding="utf-8")
    (rules_dir / "README.md").write_text("notes\n", encoding="utf-8")

    assert rule_set_version(rules_dir) == before


def test_version_is_stable_for_same_content(tmp_path):
    first = write_rules(tmp_path / "a", rule_file(SET_P1))
    second = write_rules(tmp_path / "b", rule_file(SET_P1))

    assert rule_set_version(first) == rule_set_version(second)


# --- facts ---------------------------------------------------------------------------------------------

def make_ticket(**fields) -> Ticket:
    values = {"number": "QP-20261207-0001", "channel": "phone", "source": "resident", "category": "consultation"}
    values.update(fields)
    return Ticket(**values)


def test_ticket_facts_fill_every_fact():
    ticket = make_ticket(source="shequyun", channel="shequyun", needs=["body_transport"], flags=["low_income"],
                         tags=["vip"], town_code="310118101", priority=2)
    town = Town(code="310118101", name="夏阳街道", pilot=True)

    facts = ticket_facts(ticket, town, history={"calls_last_30_days": 4, "open_tickets_of_caller": 1},
                         clock={"working_time": True})

    assert set(facts) == set(TICKET_FACTS)
    assert facts["is_referral"] is True
    assert facts["needs"] == ["body_transport"]
    assert facts["town"] == "夏阳街道"
    assert facts["town_code"] == "310118101"
    assert facts["pilot_town"] is True
    assert facts["priority"] == 2.0
    assert facts["calls_last_30_days"] == 4.0
    assert facts["open_tickets_of_caller"] == 1.0
    assert facts["working_time"] is True
    assert facts["holiday"] is False


def test_ticket_facts_defaults_without_town():
    facts = ticket_facts(make_ticket())

    assert facts["is_referral"] is False
    assert facts["town"] == ""
    assert facts["town_code"] == ""
    assert facts["pilot_town"] is False
    assert facts["calls_last_30_days"] == 0.0
    assert facts["needs"] == []


def test_ticket_facts_reject_unknown_history_key():
    with pytest.raises(ValueError, match="unknown history key calls_last_30days"):
        ticket_facts(make_ticket(), history={"calls_last_30days": 3})


def test_ticket_facts_reject_other_town():
    with pytest.raises(ValueError, match="not in 310118102"):
        ticket_facts(make_ticket(town_code="310118101"), Town(code="310118102", name="赵巷镇"))


def test_ticket_facts_evaluate(tmp_path):
    rule_set = load_rule_set(write_rules(tmp_path, rule_file(SET_P1, RAISE_1)))

    decision = rule_set.evaluate_priority(ticket_facts(make_ticket(needs=["body_transport"])))

    assert decision.priority == 1


def test_facts_with_defaults_derive_referral():
    assert facts_with_defaults({"source": "elderly_advisor"})["is_referral"] is True
    assert facts_with_defaults({})["is_referral"] is False
    assert facts_with_defaults({"source": "resident", "is_referral": True})["is_referral"] is True


@pytest.mark.parametrize(("partial", "message"), [
    ({"need": ["body_transport"]}, "unknown fact need"),
    ({"needs": "body_transport"}, "fact needs must be a list of strings"),
    ({"is_referral": "yes"}, "fact is_referral must be true or false"),
    ({"calls_last_30_days": "3"}, "fact calls_last_30_days must be a number"),
    ({"category": 3}, "fact category must be a string"),
])
def test_facts_with_defaults_reject(partial, message):
    with pytest.raises(ValueError, match=message):
        facts_with_defaults(partial)


# --- example cases -------------------------------------------------------------------------------------

def test_case_file_errors_name_line(tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent("""
        cases:
          - name: good
            facts: {category: consultation}
            expect: {priority: P3, queue_rank: 100, fired: []}
          - name: typo in facts
            facts: {categry: consultation}
            expect: {priority: P3, queue_rank: 100, fired: []}
          - name: bad expectation
            facts: {}
            expect: {priority: high, queue_rank: 100, fired: []}
          - name: good
            facts: {}
            expect: {priority: P4, queue_rank: 100}
        """).lstrip("\n"), encoding="utf-8")

    with pytest.raises(RuleError) as caught:
        load_cases(path)

    lines = str(caught.value).splitlines()
    assert any("cases.yaml:6: case typo in facts: unknown fact categry" in line for line in lines)
    assert any("cases.yaml:10: case bad expectation: expect: invalid priority 'high'" in line for line in lines)
    assert any("cases.yaml:13: case good: expect: missing key 'fired'" in line for line in lines)


def test_run_case_lists_mismatches(tmp_path):
    rule_set = load_rule_set(write_rules(tmp_path / "rules", rule_file(SET_P2)))
    path = tmp_path / "cases.yaml"
    path.write_text("cases:\n  - name: wrong\n    facts: {category: consultation}\n"
                    "    expect: {priority: P1, queue_rank: 10, fired: [other-rule], added_tags: [watch]}\n",
                    encoding="utf-8")

    mismatches = run_case(rule_set, load_cases(path)[0])

    assert mismatches == [
        "priority: expected P1, actual P2",
        "queue_rank: expected 10, actual 100",
        "fired: expected [other-rule], actual [set-p2]",
        "added_tags: expected [watch], actual []",
    ]
