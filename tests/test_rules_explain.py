"""The rule trace in sentences: wording, the ticket API field and the ticket page."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime

import pytest
import time_machine
from sqlmodel import select
from web_helpers import log_in, refer

from hotline import create_app
from hotline import runtime as runtime_module
from hotline.config import DEFAULT_RULES_DIR
from hotline.models import Ticket
from hotline.queueing import InProcessQueue
from hotline.rules import explain, versions
from hotline.rules.explain import describe_trace, ticket_trace_text
from hotline.rules.facts import facts_with_defaults
from hotline.rules.loader import load_rule_set
from hotline.runtime import build_runtime

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
BODY_TRANSPORT_ZH = "P1：需接运遗体（规则 body-transport-urgent）"


@pytest.fixture(scope="module")
def shipped_rules():
    return load_rule_set(DEFAULT_RULES_DIR)


def trace_of(rule_set, **facts):
    return rule_set.evaluate_priority(facts_with_defaults(facts)).trace


def test_changed_rule_sentence(shipped_rules):
    trace = trace_of(shipped_rules, category="agency_service", needs=["body_transport"])

    lines = {line.rule: line for line in describe_trace(trace, shipped_rules, "zh")}

    assert lines["body-transport-urgent"].text == BODY_TRANSPORT_ZH
    assert lines["body-transport-urgent"].changed
    assert lines["referral-first"].text.startswith("不符合：社区转介")
    assert lines["referral-first"].text.endswith("（规则 referral-first）")
    assert not lines["referral-first"].matched


def test_repeated_trace_worded_alike_per_language(shipped_rules):
    trace = trace_of(shipped_rules, category="agency_service", needs=["body_transport"])

    first = describe_trace(trace, shipped_rules, "zh")
    first.clear()
    again = describe_trace(trace, shipped_rules, "zh")
    english = describe_trace(trace, shipped_rules, "en")

    assert [line.text for line in again] == [line.text for line in explain._describe(trace, shipped_rules, "zh")]
    assert BODY_TRANSPORT_ZH in [line.text for line in again]
    assert english[0].text != again[0].text


def test_sentences_follow_file_order(shipped_rules):
    trace = trace_of(shipped_rules, category="consultation")

    lines = describe_trace(trace, shipped_rules, "zh")

    assert [line.rule for line in lines] == [rule.id for rule in shipped_rules.rules]


def test_raise_and_queue_rank_sentences(shipped_rules):
    trace = trace_of(shipped_rules, category="consultation", source="elderly_advisor", flags=["solitary_elderly"])

    texts = {line.rule: line.text for line in describe_trace(trace, shipped_rules, "zh")}

    assert texts["vulnerable-resident"] == "提升1级至P2：独居老人、孤寡老人或低保/特困居民（规则 vulnerable-resident）"
    assert texts["referral-first"].startswith("队内排序10：社区转介")


def test_match_without_effect_sentence(shipped_rules):
    trace = trace_of(shipped_rules, category="eco_burial")

    texts = {line.rule: line.text for line in describe_trace(trace, shipped_rules, "zh")}

    assert texts["eco-burial-base"].startswith("符合，但未改变结果：生态葬")


def test_english_sentences(shipped_rules):
    trace = trace_of(shipped_rules, category="agency_service", needs=["body_transport"])

    texts = {line.rule: line.text for line in describe_trace(trace, shipped_rules, "en")}

    assert texts["body-transport-urgent"] == "P1: Body transport needed (rule body-transport-urgent)"
    assert texts["referral-first"].startswith("Did not match: Referral from")


def test_unknown_rule_named_by_id(shipped_rules):
    trace = [{"rule": "retired-rule", "matched": False, "changes": {}}]

    assert [line.text for line in describe_trace(trace, shipped_rules, "zh")] == ["不符合：规则 retired-rule"]
    assert [line.text for line in describe_trace(trace, None, "en")] == ["Did not match: rule retired-rule"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_adds_trace_text(client, seeded):
    number = refer(client, seeded["shequyun"], "T1", category="agency_service", needs=["body_transport"])

    body = client.get(f"/api/v1/tickets/{number}",
                      headers={"Authorization": f"Bearer {seeded['operator']}"}).get_json()

    assert BODY_TRANSPORT_ZH in body["rule_trace_text"]
    assert len(body["rule_trace_text"]) == len(body["rule_trace"])
    assert body["rule_trace"][0] == {"rule": "agency-service-base", "matched": True, "changes": {}}
    assert BODY_TRANSPORT_ZH in body["priority_reasons"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_api_trace_text_in_english(client, seeded):
    number = refer(client, seeded["shequyun"], "T1", category="agency_service", needs=["body_transport"])

    body = client.get(f"/api/v1/tickets/{number}", headers={"Authorization": f"Bearer {seeded['operator']}",
                                                             "Accept-Language": "en"}).get_json()

    assert "P1: Body transport needed (rule body-transport-urgent)" in body["rule_trace_text"]


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_ticket_page_shows_sentences(client, seeded, runtime):
    number = refer(client, seeded["shequyun"], "T1", category="agency_service", needs=["body_transport"])
    assert log_in(client, "operator").status_code == 302

    page = client.get(f"/tickets/{number}").get_data(as_text=True)

    with runtime.transaction() as session:
        version = session.exec(select(Ticket.rule_set_version).where(Ticket.number == number)).one()
    assert f'<li class="matched">{BODY_TRANSPORT_ZH}</li>' in page
    assert "2026-12-07 09:00 起使用的规则集" in page
    assert version not in page, "the page shows when the rule set came into use, not its hash"


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_old_ticket_keeps_its_wording(client, seeded, settings, tmp_path):
    old_number = refer(client, seeded["shequyun"], "OLD", category="agency_service", needs=["body_transport"])
    changed = tmp_path / "changed_rules"
    shutil.copytree(DEFAULT_RULES_DIR, changed)
    priority = changed / "priority.yaml"
    priority.write_text(priority.read_text(encoding="utf-8").replace("description: 需接运遗体",
                                                                     "description: 家中需接运遗体"), encoding="utf-8")
    second = build_runtime(replace(settings, rules_dir=changed), queue=InProcessQueue())
    previous = runtime_module._current
    runtime_module.install(second)
    second_client = create_app(second).test_client()

    try:
        new_number = refer(second_client, seeded["shequyun"], "NEW", category="agency_service",
                           needs=["body_transport"])
        headers = {"Authorization": f"Bearer {seeded['operator']}"}
        old_text = second_client.get(f"/api/v1/tickets/{old_number}", headers=headers).get_json()["rule_trace_text"]
        new_text = second_client.get(f"/api/v1/tickets/{new_number}", headers=headers).get_json()["rule_trace_text"]
    finally:
        runtime_module._current = previous
        second.engine.dispose()

    assert BODY_TRANSPORT_ZH in old_text
    assert "P1：家中需接运遗体（规则 body-transport-urgent）" in new_text


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_stored_version_words_trace(client, seeded, runtime, monkeypatch):
    number = refer(client, seeded["shequyun"], "T1", category="agency_service", needs=["body_transport"])
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        monkeypatch.delitem(versions._loaded, ticket.rule_set_version)
        monkeypatch.setattr(versions, "_latest", None)
        versions._parsed.pop(ticket.rule_set_version, None)

        texts = ticket_trace_text(ticket, "zh")

    assert BODY_TRANSPORT_ZH in texts
