"""Conditions compiled to closures decide exactly as rule-engine does, on any well-typed facts."""

from __future__ import annotations

import textwrap
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.config import DEFAULT_RULES_DIR
from hotline.rules.compiled import prepare_facts
from hotline.rules.expressions import FACT_KINDS, RuleError, compile_condition
from hotline.rules.loader import load_rule_set
from hotline.sla.calendars import load_calendars
from hotline.sla.policies import load_policies
from hotline.vocabulary import CATEGORIES, FLAGS, NEEDS, SOURCES

WORDS = sorted(CATEGORIES) + ["", "练塘镇", "白鹤镇", "x"]
TAGS = ["repeat_caller", "callback_needed", "operator_requested"]

TRANSLATED = [
    'category == "consultation"',
    'category != "consultation"',
    'category in ["consultation", "complaint"]',
    '"body_transport" in needs',
    '"low_income" not in flags',
    'not is_referral',
    'is_referral and (pilot_town or holiday)',
    'working_time == true',
    'town == ""',
    'town == null',
    'null != town',
    '"镇" in town',
    'town in ["练塘镇", "白鹤镇"]',
    'needs == []',
    'flags != ["low_income"]',
    'tags == ["repeat_caller"]',
    'calls_last_30_days >= 3 and open_tickets_of_caller >= 1',
    'calls_last_30_days > 2.5',
    'priority <= 2',
    'priority == 1',
    '3 < calls_last_30_days',
    'category < "d"',
    'source in ["shequyun", "elderly_advisor"] or calls_last_30_days >= 1.0',
    'category == source',
    'needs in [["body_transport"], []]',
    'true',
]
UNTRANSLATED = [
    'calls_last_30_days + 1 > 3',
    'category =~ "con.*"',
    'needs.length > 1',
    '[x for x in needs if x == "body_transport"] != []',
]

facts_strategy = st.fixed_dictionaries({
    "category": st.sampled_from(WORDS),
    "channel": st.sampled_from(["phone", "portal", "referral_api", "shequyun"]),
    "source": st.sampled_from(sorted(SOURCES)),
    "is_referral": st.booleans(),
    "needs": st.lists(st.sampled_from(sorted(NEEDS)), max_size=3, unique=True),
    "flags": st.lists(st.sampled_from(sorted(FLAGS)), max_size=3, unique=True),
    "tags": st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
    "town": st.sampled_from(WORDS),
    "town_code": st.sampled_from(["", "310118101", "310118106"]),
    "pilot_town": st.booleans(),
    "priority": st.sampled_from([1.0, 2.0, 3.0, 4.0]),
    "open_tickets_of_caller": st.integers(0, 4).map(float) | st.integers(0, 4),
    "calls_last_30_days": st.floats(0, 10, allow_nan=False) | st.integers(0, 10),
    "working_time": st.booleans(),
    "holiday": st.booleans(),
})


def shipped_conditions():
    rule_set = load_rule_set(DEFAULT_RULES_DIR)
    calendars = load_calendars(DEFAULT_RULES_DIR / "calendars.yaml", ZoneInfo("Asia/Shanghai"))
    policies = load_policies(DEFAULT_RULES_DIR / "sla.yaml", calendars)
    return [rule.condition for rule in rule_set.rules] + [policy.condition for policy in policies.policies]


CONDITIONS = [compile_condition(text, "test") for text in TRANSLATED] + shipped_conditions()


@pytest.mark.parametrize("text", TRANSLATED)
def test_condition_is_translated(text):
    assert compile_condition(text, "test").test is not None


@pytest.mark.parametrize("text", UNTRANSLATED)
def test_condition_left_to_rule_engine(text):
    assert compile_condition(text, "test").test is None


@settings(max_examples=300, deadline=None)
@given(facts=facts_strategy)
def test_closures_match_rule_engine(facts):
    values = prepare_facts(facts, FACT_KINDS)

    assert values is not None
    for condition in CONDITIONS:
        if condition.test is not None:
            assert condition.test(values) == condition.matches(facts), condition.text


@pytest.fixture(scope="module")
def shipped_rules():
    return load_rule_set(DEFAULT_RULES_DIR)


@pytest.fixture(scope="module")
def mixed_rules(tmp_path_factory):
    """Rules that use every translated form, one untranslated condition, and all effects."""
    rules_dir = tmp_path_factory.mktemp("mixed")
    body = ["defaults: {priority: P4, queue_rank: 100}", "rules:"]
    effects = ["set: {priority: P2}", "raise: 1", "set: {queue_rank: 20}", "add_tags: [flagged]",
               "set: {priority: P1, queue_rank: 5}", "raise: 2"]
    for index, text in enumerate(TRANSLATED + UNTRANSLATED[:1]):
        body.append(f"  - id: rule-{index}\n    description: 规则{index}\n    when: '{text}'\n"
                    f"    {effects[index % len(effects)]}")
    (rules_dir / "priority.yaml").write_text("\n".join(body) + "\n", encoding="utf-8")
    return load_rule_set(rules_dir)


@settings(max_examples=200, deadline=None)
@given(facts=facts_strategy)
def test_decisions_match_rule_engine(shipped_rules, mixed_rules, facts):
    for rule_set in (shipped_rules, mixed_rules):
        fast = rule_set.evaluate_priority(facts)
        slow = rule_set.evaluate_priority(facts, compiled=False)

        assert fast == slow


def test_mixed_rules_use_closures_per_rule(mixed_rules):
    assert mixed_rules._compiled is None, "one condition is untranslated, so rules run one by one"
    assert sum(rule.condition.test is None for rule in mixed_rules.rules) == 1


def test_shipped_rules_fully_translated(shipped_rules):
    assert shipped_rules._compiled is not None


@pytest.mark.parametrize("field, value", [("town", None), ("needs", "body_transport"), ("priority", "1"),
                                          ("is_referral", 1), ("calls_last_30_days", float("nan"))])
def test_wrong_types_fall_back(shipped_rules, field, value):
    facts = {**dict.fromkeys(["category", "channel", "source", "town", "town_code"], ""), "is_referral": False,
             "needs": [], "flags": [], "tags": [], "pilot_town": False, "priority": 3.0,
             "open_tickets_of_caller": 0.0, "calls_last_30_days": 0.0, "working_time": False, "holiday": False,
             field: value}

    assert prepare_facts(facts, FACT_KINDS) is None
    outcomes = []
    for compiled in (True, False):
        try:
            outcomes.append(shipped_rules.evaluate_priority(facts, compiled=compiled))
        except (RuleError, ArithmeticError) as error:  # NaN makes rule-engine raise decimal.InvalidOperation
            outcomes.append(f"{type(error).__name__}: {error}")
    assert outcomes[0] == outcomes[1]


def test_missing_fact_raises(shipped_rules):
    with pytest.raises(ValueError, match="facts are missing calls_last_30_days, channel, flags"):
        shipped_rules.evaluate_priority({"category": "consultation"})


def test_substring_condition(tmp_path):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "priority.yaml").write_text(textwrap.dedent("""
        defaults: {priority: P4, queue_rank: 100}
        rules:
          - id: town-letter
            description: 测试
            when: '"a" in town'
            raise: 1
    """), encoding="utf-8")
    rule_set = load_rule_set(rules_dir)
    facts = {"category": "", "channel": "", "source": "", "is_referral": False, "needs": [], "flags": [],
             "tags": [], "town": "", "town_code": "", "pilot_town": False, "priority": 3.0,
             "open_tickets_of_caller": 0.0, "calls_last_30_days": 0.0, "working_time": False, "holiday": False}

    assert rule_set.evaluate_priority(facts).priority == 4
    assert rule_set.evaluate_priority({**facts, "town": "a"}).priority == 3
