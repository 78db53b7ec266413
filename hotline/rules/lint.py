"""Checks of a parsed rule list that no single rule shows: unknown values, dead and conflicting rules.

- A condition that compares `category`, `channel` or `source` with a value those facts never take, or
  tests membership of a need or flag that does not exist, names the value and the accepted ones: such a
  typo makes the rule silently never match.
- A condition that is the constant `false` can never match (unreachable).
- Two rules with the same condition that set different priorities or queue ranks conflict: which one
  the author meant cannot be told from the file.
- A rule with the same condition and the same effects as an earlier one is a duplicate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import rule_engine

from hotline.rules.engine import Rule, priority_label
from hotline.vocabulary import CATEGORIES, CHANNELS, FLAGS, NEEDS, SOURCES

# Facts whose values come from a fixed vocabulary, and the vocabulary.
STRING_VOCABULARIES = {"category": CATEGORIES, "channel": CHANNELS, "source": SOURCES}
LIST_VOCABULARIES = {"needs": NEEDS, "flags": FLAGS}
_SPACES = re.compile(r"\s+")


def lint_rules(rules: list[Rule], where: str) -> list[str]:
    """Return one `file:line: rule id: problem` line per problem found in `rules` (empty when none)."""
    problems = []
    for rule in rules:
        problems.extend(f"{where}:{rule.line}: rule {rule.id}: {problem}" for problem in _condition_problems(rule))
    problems.extend(_pair_problems(rules, where))
    return problems


def _condition_problems(rule: Rule) -> Iterator[str]:
    text = rule.condition.text.strip()
    if text.lower() == "false":
        yield "condition is always false, so the rule can never match"
        return
    expression = rule_engine.Rule(text).statement.expression
    for fact, value in _compared_values(expression):
        accepted = STRING_VOCABULARIES.get(fact) or LIST_VOCABULARIES.get(fact)
        if value not in accepted:
            yield (f"condition compares {fact} with unknown value {value!r}, so that part never matches; "
                   f"accepted values: {', '.join(accepted)}")


def _compared_values(node) -> Iterator[tuple[str, str]]:
    """Yield (fact, value) for `fact == "value"`, `fact != "value"`, `"value" in fact` and `fact in [...]`."""
    if isinstance(node, rule_engine.ast.ComparisonExpression):
        pair = _symbol_and_string(node.left, node.right) or _symbol_and_string(node.right, node.left)
        if pair is not None and pair[0] in STRING_VOCABULARIES:
            yield pair
    if isinstance(node, rule_engine.ast.ContainsExpression):
        pair = _symbol_and_string(node.container, node.member)
        if pair is not None and pair[0] in LIST_VOCABULARIES:
            yield pair
        yield from _listed_values(node)
    for child in _children(node):
        yield from _compared_values(child)


def _listed_values(node) -> Iterator[tuple[str, str]]:
    """Yield (fact, value) for each literal of `fact in ["a", "b"]`."""
    member, container = node.member, node.container
    if isinstance(member, rule_engine.ast.SymbolExpression) and member.name in STRING_VOCABULARIES \
            and isinstance(container, rule_engine.ast.ArrayExpression):
        for item in container.value:
            if isinstance(item, rule_engine.ast.StringExpression):
                yield member.name, item.value


def _symbol_and_string(symbol, string) -> tuple[str, str] | None:
    if isinstance(symbol, rule_engine.ast.SymbolExpression) and isinstance(string, rule_engine.ast.StringExpression):
        return symbol.name, string.value
    return None


def _children(node) -> list:
    names = ("left", "right", "expression", "container", "member", "condition", "case_true", "case_false")
    return [getattr(node, name) for name in names if isinstance(getattr(node, name, None), rule_engine.ast.ASTNodeBase)]


def _pair_problems(rules: list[Rule], where: str) -> Iterator[str]:
    first_with: dict[str, Rule] = {}
    for rule in rules:
        key = _SPACES.sub(" ", rule.condition.text.strip())
        earlier = first_with.setdefault(key, rule)
        if earlier is rule:
            continue
        conflicts = _conflicts(earlier, rule)
        if conflicts:
            yield (f"{where}:{rule.line}: rule {rule.id}: same condition as rule {earlier.id} (line {earlier.line}) "
                   f"but sets {conflicts}; merge the two rules or make their conditions differ")
        elif _effects(earlier) == _effects(rule):
            yield (f"{where}:{rule.line}: rule {rule.id}: repeats rule {earlier.id} (line {earlier.line}) "
                   f"with the same condition and effects; remove one")


def _conflicts(first: Rule, second: Rule) -> str:
    differences = []
    if None not in (first.set_priority, second.set_priority) and first.set_priority != second.set_priority:
        differences.append(f"priority {priority_label(second.set_priority)} where it sets "
                           f"{priority_label(first.set_priority)}")
    if None not in (first.set_queue_rank, second.set_queue_rank) and first.set_queue_rank != second.set_queue_rank:
        differences.append(f"queue_rank {second.set_queue_rank} where it sets {first.set_queue_rank}")
    return " and ".join(differences)


def _effects(rule: Rule) -> tuple:
    return rule.set_priority, rule.set_queue_rank, rule.raise_steps, tuple(sorted(rule.add_tags))
