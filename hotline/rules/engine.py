"""Priority decisions from a loaded rule set.

Every condition is evaluated against the same input facts, so the result does not depend on the order
of the rules in the file:

1. The priority starts at the default and each matching `set.priority` can only make it more urgent;
   the most urgent one wins.
2. Then every matching rule with `raise: N` moves the priority N steps towards P1, once per rule,
   capped at P1.
3. The queue rank is the lowest of the default and every matching `set.queue_rank`.
4. Tags from `add_tags` are collected; rules never see tags added by other rules.

Only the attribution of an effect to a rule uses the file order: when the P1 cap absorbs a raise, the
raises of earlier rules are the ones reported as applied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import rule_engine

from hotline.rules.compiled import prepare_facts
from hotline.rules.expressions import FACT_KINDS, TICKET_FACTS, Condition, RuleError
from hotline.vocabulary import PRIORITIES

log = logging.getLogger("hotline.rules")

MOST_URGENT = 1
MAX_CACHED_DECISIONS = 4096
LEAST_URGENT = len(PRIORITIES)


def priority_label(priority: int) -> str:
    """Return the code of a numeric priority, for example 1 -> "P1"."""
    return PRIORITIES[priority - 1]


@dataclass(frozen=True)
class Rule:
    """One validated entry of `rules:` in priority.yaml."""

    id: str
    description: str
    description_en: str
    condition: Condition
    line: int
    set_priority: int | None = None
    set_queue_rank: int | None = None
    raise_steps: int = 0
    add_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PriorityDecision:
    """The outcome of one evaluation, ready to store on the ticket.

    `reasons` lists the matched rules whose effect shows in the outcome, as dicts with the keys rule,
    description, effect, text_zh and text_en. `trace` lists every rule in file order as
    {rule, matched, changes}; `changes` is empty for a rule that did not match or changed nothing.
    `added_tags` contains the tags the rules add that the facts did not have yet.
    """

    priority: int
    queue_rank: int
    reasons: list[dict[str, Any]]
    trace: list[dict[str, Any]]
    version: str
    added_tags: list[str] = field(default_factory=list)

    @property
    def priority_code(self) -> str:
        return priority_label(self.priority)

    def copy(self) -> PriorityDecision:
        """Return a copy whose lists and dicts are new, so a ticket that stores them shares none."""
        return PriorityDecision(
            priority=self.priority, queue_rank=self.queue_rank,
            reasons=[dict(reason) for reason in self.reasons],
            trace=[{**entry, "changes": _copied_changes(entry["changes"])} for entry in self.trace],
            version=self.version, added_tags=list(self.added_tags),
        )


@dataclass(frozen=True)
class RuleSet:
    """The rules of priority.yaml with their defaults; `version` identifies the rule files they came from.

    `files` maps the name of every *.yaml file of the rules folder to the bytes the version was computed
    from, so the exact files behind a version can be stored and shown later.
    """

    version: str
    source: str
    default_priority: int
    default_queue_rank: int
    rules: tuple[Rule, ...]
    files: Mapping[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    # (rule, closure) pairs when every condition was translated to a closure, else None.
    _compiled: tuple | None = field(init=False, default=None, compare=False, repr=False)
    # Decisions by prepared facts. Tickets of the same kind and history have the same facts, so they share one.
    _decisions: dict[tuple, PriorityDecision] = field(init=False, default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        tests = tuple(rule.condition.test for rule in self.rules)
        compiled = tuple(zip(self.rules, tests, strict=True)) if all(tests) else None
        object.__setattr__(self, "_compiled", compiled)

    def evaluate_priority(self, facts: Mapping[str, Any], *, compiled: bool = True) -> PriorityDecision:
        """Evaluate every rule against `facts` and combine the effects of the matching ones.

        `facts` must contain every key of TICKET_FACTS, as hotline.rules.facts builds them. A missing key
        raises ValueError, and a condition that fails on a value of the wrong type raises RuleError.
        Conditions run as closures built from their syntax trees (hotline.rules.compiled) when every
        fact has its declared type; otherwise, and with compiled=False, rule-engine evaluates each one.
        Both ways give the same decision, which the tests check. When every rule has a closure, decisions
        are cached per rule set by the prepared facts, which are all they depend on, and each call returns
        its own copy.
        """
        values = prepare_facts(facts, FACT_KINDS) if compiled else None
        if values is None:
            _require_all_facts(facts)
            return self._decide(facts, None)
        # Only closures read the prepared values alone. rule-engine reads the facts as given, and
        # distinguishes 3 from 3.0, which prepare to the same value.
        if self._compiled is None:
            return self._decide(facts, values)

        key = tuple(values.values())
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(facts, values)
            if len(self._decisions) >= MAX_CACHED_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision.copy()

    def _decide(self, facts: Mapping[str, Any], values: Mapping[str, Any] | None) -> PriorityDecision:
        matching_rules = self._matching(facts, values)

        set_priority = self.default_priority
        queue_rank = self.default_queue_rank
        raise_steps = 0
        for rule in matching_rules:
            if rule.set_priority is not None and rule.set_priority < set_priority:
                set_priority = rule.set_priority
            if rule.set_queue_rank is not None and rule.set_queue_rank < queue_rank:
                queue_rank = rule.set_queue_rank
            raise_steps += rule.raise_steps
        changes = self._attribute(matching_rules, set_priority, queue_rank, facts)
        final_priority = max(MOST_URGENT, set_priority - raise_steps)

        trace = [{"rule": rule.id, "matched": rule.id in changes, "changes": changes.get(rule.id, {})}
                 for rule in self.rules]
        reasons = [_reason(rule, changes[rule.id]) for rule in matching_rules if changes[rule.id]]
        added_tags = [tag for rule in matching_rules for tag in changes[rule.id].get("add_tags", ())]

        if log.isEnabledFor(logging.DEBUG):
            log.debug("Rule set %s: priority %s, queue rank %d, matched %s", self.version,
                      priority_label(final_priority), queue_rank, ",".join(sorted(changes)) or "-")
        return PriorityDecision(priority=final_priority, queue_rank=queue_rank, reasons=reasons,
                                trace=trace, version=self.version, added_tags=added_tags)

    def _matching(self, facts: Mapping[str, Any], values: Mapping[str, Any] | None) -> list[Rule]:
        """Return the rules whose condition holds, in file order."""
        if values is not None and self._compiled is not None:
            try:
                return [rule for rule, test in self._compiled if test(values)]
            except rule_engine.errors.EngineError:
                pass  # evaluated again below, so that the error names the rule
        return [rule for rule in self.rules if _matches(rule, facts, values)]

    def _attribute(self, matching_rules: Sequence[Rule], set_priority: int, queue_rank: int,
                   facts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Return, per matching rule id, the effects of that rule that show in the outcome."""
        changes: dict[str, dict[str, Any]] = {rule.id: {} for rule in matching_rules}

        for rule in matching_rules:
            if rule.set_priority == set_priority and set_priority < self.default_priority:
                changes[rule.id]["priority"] = priority_label(set_priority)
            if rule.set_queue_rank == queue_rank and queue_rank < self.default_queue_rank:
                changes[rule.id]["queue_rank"] = queue_rank

        current = set_priority
        for rule in matching_rules:
            steps = min(rule.raise_steps, current - MOST_URGENT)
            if steps > 0:
                current -= steps
                changes[rule.id]["raise"] = steps
                changes[rule.id]["raised_to"] = priority_label(current)

        seen_tags = set(facts["tags"])
        for rule in matching_rules:
            new_tags = [tag for tag in rule.add_tags if tag not in seen_tags]
            seen_tags.update(new_tags)
            if new_tags:
                changes[rule.id]["add_tags"] = new_tags
        return changes


def _copied_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    return {name: list(value) if isinstance(value, list) else value for name, value in changes.items()}


def _require_all_facts(facts: Mapping[str, Any]) -> None:
    missing = sorted(set(TICKET_FACTS) - set(facts))
    if missing:
        raise ValueError(f"facts are missing {', '.join(missing)}; build them with hotline.rules.facts")


def _matches(rule: Rule, facts: Mapping[str, Any], values: Mapping[str, Any] | None) -> bool:
    test = rule.condition.test
    try:
        if values is not None and test is not None:
            return test(values)
        return rule.condition.matches(facts)
    except rule_engine.errors.EngineError as error:
        message = getattr(error, "message", str(error))
        raise RuleError(f"rule {rule.id} (line {rule.line}): condition {rule.condition.text!r} "
                        f"failed on these facts: {message}") from error


def _reason(rule: Rule, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Describe what one rule did, in both languages, e.g. "P1：需接运遗体（规则 body-transport-urgent）"."""
    return {
        "rule": rule.id,
        "description": rule.description,
        "effect": "; ".join(_effect_codes(changes)),
        "text_zh": f"{'，'.join(effect_phrases(changes, 'zh'))}：{rule.description}（规则 {rule.id}）",
        "text_en": f"{', '.join(effect_phrases(changes, 'en'))}: {rule.description_en or rule.description} "
                   f"(rule {rule.id})",
    }


def effect_phrases(changes: Mapping[str, Any], language: str) -> list[str]:
    """Word the effects of one rule, as a trace entry's `changes` records them, in Chinese or English ("en")."""
    english = language == "en"
    phrases: list[str] = []
    if "priority" in changes:
        phrases.append(changes["priority"])
    if "raise" in changes:
        phrases.append(f"raised {changes['raise']} to {changes['raised_to']}" if english
                       else f"提升{changes['raise']}级至{changes['raised_to']}")
    if "queue_rank" in changes:
        phrases.append(f"queue rank {changes['queue_rank']}" if english else f"队内排序{changes['queue_rank']}")
    if "add_tags" in changes:
        tags = ", ".join(changes["add_tags"])
        phrases.append(f"tag {tags}" if english else f"加标签 {tags}")
    return phrases


def _effect_codes(changes: Mapping[str, Any]) -> list[str]:
    codes: list[str] = []
    if "priority" in changes:
        codes.append(f"priority {changes['priority']}")
    if "raise" in changes:
        codes.append(f"raise {changes['raise']} to {changes['raised_to']}")
    if "queue_rank" in changes:
        codes.append(f"queue_rank {changes['queue_rank']}")
    if "add_tags" in changes:
        codes.append(f"add_tags {', '.join(changes['add_tags'])}")
    return codes
