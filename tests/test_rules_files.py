"""The shipped rule files: their example cases, their promises to referrals, and `hotline rules`."""

from __future__ import annotations

import itertools
import shutil

import pytest
from click.testing import CliRunner

from hotline.cli.rules import _optional_loader, rules
from hotline.config import DEFAULT_RULES_DIR
from hotline.dispatch.cases import CASES_DIR as DISPATCH_CASES_DIR
from hotline.dispatch.cases import load_dispatch_cases
from hotline.rules.facts import facts_with_defaults
from hotline.rules.loader import load_cases, load_rule_set, rule_set_version, run_case
from hotline.vocabulary import CATEGORIES, FLAGS, NEEDS, REFERRAL_SOURCES

CASE_FILES = sorted((DEFAULT_RULES_DIR / "tests").glob("*.yaml"))
SHIPPED_CASES = [case for path in CASE_FILES for case in load_cases(path)]
REFERRAL_CHANNELS = {"elderly_advisor": "referral_api", "assistance_advisor": "referral_api",
                     "community_worker": "portal", "shequyun": "shequyun"}


@pytest.fixture(scope="module")
def shipped_rules():
    return load_rule_set(DEFAULT_RULES_DIR)


@pytest.mark.parametrize("case", SHIPPED_CASES, ids=[case.name for case in SHIPPED_CASES])
def test_shipped_case(shipped_rules, case):
    assert run_case(shipped_rules, case) == [], case.location


def test_shipped_cases_cover_enough():
    assert len(SHIPPED_CASES) >= 12


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_every_category_has_base_rule(shipped_rules, category):
    decision = shipped_rules.evaluate_priority(facts_with_defaults({"category": category}))

    fired = [step["rule"] for step in decision.trace if step["matched"]]
    assert len(fired) == 1
    assert fired[0].endswith("-base")


def all_subsets(items):
    return [list(combo) for size in range(len(items) + 1) for combo in itertools.combinations(items, size)]


def test_referral_never_less_urgent_than_phone(shipped_rules):
    """Every category, every combination of needs, and no flag or one flag, from each referral source."""
    sources = itertools.cycle(REFERRAL_SOURCES)
    flag_choices = [[]] + [[flag] for flag in sorted(FLAGS)]

    for category, needs, flags in itertools.product(sorted(CATEGORIES), all_subsets(sorted(NEEDS)), flag_choices):
        source = next(sources)
        shared = {"category": category, "needs": needs, "flags": flags}
        phone = shipped_rules.evaluate_priority(facts_with_defaults({**shared, "source": "resident"}))
        referral = shipped_rules.evaluate_priority(
            facts_with_defaults({**shared, "source": source, "channel": REFERRAL_CHANNELS[source]}))

        assert referral.priority <= phone.priority, (category, needs, flags, source)
        assert referral.queue_rank < phone.queue_rank, (category, needs, flags, source)


def test_reason_text_for_body_transport(shipped_rules):
    decision = shipped_rules.evaluate_priority(facts_with_defaults({"category": "agency_service",
                                                                    "needs": ["body_transport"]}))

    assert "P1：需接运遗体（规则 body-transport-urgent）" in [reason["text_zh"] for reason in decision.reasons]


# --- hotline rules check / test ------------------------------------------------------------------------

@pytest.fixture
def rules_copy(tmp_path):
    """A writable copy of the shipped rules directory, with the files of every other loader."""
    target = tmp_path / "routing_rules"
    shutil.copytree(DEFAULT_RULES_DIR, target)
    return target


def test_check_shipped_rules():
    result = CliRunner().invoke(rules, ["check", "--rules", str(DEFAULT_RULES_DIR)])

    assert result.exit_code == 0, result.output
    assert result.output == f"OK {rule_set_version(DEFAULT_RULES_DIR)}\n"


def test_check_reads_rules_dir_setting(rules_copy):
    result = CliRunner().invoke(rules, ["check"], env={"HOTLINE_RULES_DIR": str(rules_copy)})

    assert result.exit_code == 0, result.output
    assert result.output == f"OK {rule_set_version(rules_copy)}\n"


def test_check_reports_broken_rule(rules_copy):
    path = rules_copy / "priority.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("set: {priority: P1}", "set: {priority: P0}"),
                    encoding="utf-8")
    line = next(number for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                if "P0" in text)

    result = CliRunner().invoke(rules, ["check", "--rules", str(rules_copy)])

    assert result.exit_code == 1
    assert f"priority.yaml:{line}: rule body-transport-urgent: set: invalid priority 'P0'" in result.output
    assert "OK" not in result.output


def test_check_reports_missing_directory(tmp_path):
    result = CliRunner().invoke(rules, ["check", "--rules", str(tmp_path / "absent")])

    assert result.exit_code == 1
    assert "rules directory not found" in result.output


def test_optional_loader_skips_absent_module():
    errors: list[str] = []

    assert _optional_loader(errors, "hotline.sla.not_written_yet", "load") is None
    assert errors == []


def test_optional_loader_reports_missing_function():
    errors: list[str] = []

    assert _optional_loader(errors, "hotline.rules.loader", "load_everything") is None
    assert errors == ["hotline.rules.loader：没有函数 load_everything"]


def test_test_command_passes_on_shipped_cases():
    result = CliRunner().invoke(rules, ["test", "--rules", str(DEFAULT_RULES_DIR)])
    english = CliRunner().invoke(rules, ["test", "--rules", str(DEFAULT_RULES_DIR)], env={"LANG": "en_GB.UTF-8"})

    dispatch_cases = [case for path in sorted((DEFAULT_RULES_DIR / DISPATCH_CASES_DIR).glob("*.yaml"))
                      for case in load_dispatch_cases(path)]
    total = len(SHIPPED_CASES) + len(dispatch_cases)
    version = rule_set_version(DEFAULT_RULES_DIR)
    assert result.exit_code == 0, result.output
    assert result.output == f"OK：{total} 个用例全部通过（{version}）\n"
    assert english.output == f"OK: {total} cases passed ({version})\n"


def test_test_command_reports_failing_case(rules_copy):
    path = rules_copy / "tests" / "priority.yaml"
    text = path.read_text(encoding="utf-8")
    wrong = text.replace("""  - name: agency service by phone
    facts: {category: agency_service, needs: [funeral_arrangement]}
    expect: {priority: P2,""", """  - name: agency service by phone
    facts: {category: agency_service, needs: [funeral_arrangement]}
    expect: {priority: P1,""")
    assert wrong != text
    path.write_text(wrong, encoding="utf-8")

    result = CliRunner().invoke(rules, ["test", "--rules", str(rules_copy)])

    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert "agency service by phone" in result.output
    assert "priority: expected P1, actual P2" in result.output
    assert "个用例中有 1 个未通过" in result.output


def test_test_command_needs_cases(rules_copy):
    shutil.rmtree(rules_copy / "tests")

    result = CliRunner().invoke(rules, ["test", "--rules", str(rules_copy)])

    assert result.exit_code == 1
    assert "未找到测试用例" in result.output


def test_test_command_reports_invalid_case_file(rules_copy):
    (rules_copy / "tests" / "broken.yaml").write_text("cases:\n  - name: x\n    facts: {needz: []}\n"
                                                      "    expect: {priority: P3, queue_rank: 100, fired: []}\n",
                                                      encoding="utf-8")

    result = CliRunner().invoke(rules, ["test", "--rules", str(rules_copy)])

    assert result.exit_code == 1
    assert "broken.yaml:3: case x: unknown fact needz" in result.output


def test_version_covers_every_shipped_file(rules_copy):
    before = rule_set_version(rules_copy)
    other = next(path for path in sorted(rules_copy.glob("*.yaml")) if path.name != "priority.yaml")

    other.write_text(other.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")

    assert rule_set_version(rules_copy) != before
