"""A ticket's rule trace in sentences an operator reads, e.g. "P1：需接运遗体（规则 body-transport-urgent）".

The trace stored on a ticket names rules by id. The sentences take each rule's description from the
rule set version that evaluated the ticket (see hotline.rules.versions.rule_set_for), so they stay
true after the rule files change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.orm import object_session

from hotline.clock import SHANGHAI, local
from hotline.models import RuleSetVersion
from hotline.rules import versions
from hotline.rules.engine import Rule, RuleSet, effect_phrases

# Traces differ only in which rules matched and how, so a few hundred likely cover a rule set version's
# tickets. Two threads that fill the cache at once at worst word one trace twice.
MAX_CACHED_TRACES = 512
_described: dict[tuple[str, str, bytes], tuple[TraceLine, ...]] = {}


@dataclass(frozen=True)
class TraceLine:
    """One rule of a trace: whether it matched, whether its effect shows in the outcome, and the sentence."""

    rule: str
    matched: bool
    changed: bool
    text: str


@dataclass(frozen=True)
class TraceView:
    """Every rule checked for a ticket, in file order, with a label of the rule set that checked them."""

    lines: tuple[TraceLine, ...]
    rule_set_label: str


def describe_trace(trace: Sequence[Mapping[str, Any]], rule_set: RuleSet | None, language: str) -> list[TraceLine]:
    """Word every entry of a stored trace ({rule, matched, changes}) in Chinese, or in English for "en".

    A rule that `rule_set` does not have is named by its id alone. Most tickets share a handful of
    traces, so the lines are cached per rule set version, language and trace.
    """
    if rule_set is None or not trace:
        return _describe(trace, rule_set, language)
    try:
        key = (rule_set.version, language, orjson.dumps(trace))
    except orjson.JSONEncodeError:
        return _describe(trace, rule_set, language)

    lines = _described.get(key)
    if lines is None:
        lines = tuple(_describe(trace, rule_set, language))
        if len(_described) >= MAX_CACHED_TRACES:
            _described.clear()
        _described[key] = lines
    return list(lines)


def _describe(trace: Sequence[Mapping[str, Any]], rule_set: RuleSet | None, language: str) -> list[TraceLine]:
    rules = {rule.id: rule for rule in rule_set.rules} if rule_set is not None else {}
    lines = []
    for entry in trace or []:
        rule_id = str(entry.get("rule", ""))
        matched = bool(entry.get("matched"))
        changes = entry.get("changes") or {}
        text = _sentence(rule_id, rules.get(rule_id), matched, changes, language)
        lines.append(TraceLine(rule=rule_id, matched=matched, changed=bool(changes), text=text))
    return lines


def ticket_trace(ticket, language: str, tz: ZoneInfo = SHANGHAI) -> TraceView:
    """Word the trace of `ticket` (a hotline.models.Ticket), reading its rule set version through its session."""
    session = object_session(ticket)
    lines = _trace_lines(session, ticket, language)
    return TraceView(lines=tuple(lines), rule_set_label=_rule_set_label(session, ticket.rule_set_version, language, tz))


def ticket_trace_text(ticket, language: str) -> list[str]:
    """Return one sentence per rule checked for `ticket`, as the ticket API shows them."""
    return [line.text for line in _trace_lines(object_session(ticket), ticket, language)]


def _trace_lines(session, ticket, language: str) -> list[TraceLine]:
    rule_set = versions.rule_set_for(session, ticket.rule_set_version)
    return describe_trace(ticket.rule_trace or [], rule_set, language)


def _sentence(rule_id: str, rule: Rule | None, matched: bool, changes: Mapping[str, Any], language: str) -> str:
    english = language == "en"
    if rule is None:
        subject = f"rule {rule_id}" if english else f"规则 {rule_id}"
    elif english:
        subject = f"{rule.description_en or rule.description} (rule {rule_id})"
    else:
        subject = f"{rule.description}（规则 {rule_id}）"

    if changes:
        separator = ", " if english else "，"
        return f"{separator.join(effect_phrases(changes, language))}{': ' if english else '：'}{subject}"
    if matched:
        return f"Matched, no effect on the outcome: {subject}" if english else f"符合，但未改变结果：{subject}"
    return f"Did not match: {subject}" if english else f"不符合：{subject}"


def _rule_set_label(session, version: str | None, language: str, tz: ZoneInfo) -> str:
    english = language == "en"
    if not version:
        return "not evaluated by rules" if english else "未经规则评估"
    row = session.get(RuleSetVersion, version) if session is not None else None
    if row is None:
        return "rule set from before versions were recorded" if english else "版本记录功能启用前的规则集"
    since = local(row.first_used_at, tz).strftime("%Y-%m-%d %H:%M")
    return f"rule set in use since {since}" if english else f"{since} 起使用的规则集"
