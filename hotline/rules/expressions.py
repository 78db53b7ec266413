"""Conditions in rule files, compiled once with the `rule-engine` library.

`rule-engine` was chosen because it is a maintained expression language made for matching records:
it has its own grammar (no Python `eval`), type-checks symbols against a declared schema when a rule
is compiled, and reports syntax and unknown-symbol errors that can name the rule that has them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rule_engine

from hotline.rules.compiled import fact_kinds, translate

_STRING = rule_engine.DataType.STRING
_STRINGS = rule_engine.DataType.ARRAY(rule_engine.DataType.STRING)
_BOOLEAN = rule_engine.DataType.BOOLEAN
_FLOAT = rule_engine.DataType.FLOAT

# The facts a condition may read. Missing optional values are empty strings, never null, so a
# condition like `town == "练塘镇"` needs no null checks.
TICKET_FACTS: dict[str, Any] = {
    "category": _STRING,
    "channel": _STRING,
    "source": _STRING,
    "is_referral": _BOOLEAN,
    "needs": _STRINGS,
    "flags": _STRINGS,
    "tags": _STRINGS,
    "town": _STRING,
    "town_code": _STRING,
    "pilot_town": _BOOLEAN,
    "priority": _FLOAT,
    "open_tickets_of_caller": _FLOAT,
    "calls_last_30_days": _FLOAT,
    "working_time": _BOOLEAN,
    "holiday": _BOOLEAN,
}

FACT_KINDS = fact_kinds(TICKET_FACTS)
_CONTEXT = rule_engine.Context(type_resolver=rule_engine.type_resolver_from_dict(TICKET_FACTS))


class RuleError(ValueError):
    """A rule file is invalid; the message names the file, the rule and the problem."""


@dataclass(frozen=True)
class Condition:
    """A compiled condition.

    `matches` evaluates it with rule-engine itself. `test` runs the same condition as Python closures
    built once from rule-engine's syntax tree, on values from prepare_facts; it exists when every part
    of the condition is one that hotline.rules.compiled translates, and returns what `matches` returns.
    """

    text: str
    _rule: rule_engine.Rule
    test: Callable[[Mapping[str, Any]], bool] | None = None

    def matches(self, facts: Mapping[str, Any]) -> bool:
        return bool(self._rule.matches(facts))


def compile_condition(text: str | bool, where: str) -> Condition:
    """Compile `text`; `where` (for example "priority.yaml, rule body-transport-urgent") prefixes errors."""
    if text is True:
        text = "true"
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"{where}: condition is missing or not a string")
    try:
        rule = rule_engine.Rule(text, context=_CONTEXT)
    except rule_engine.errors.SymbolResolutionError as error:
        known = ", ".join(sorted(TICKET_FACTS))
        raise RuleError(
            f"{where}: unknown name {error.symbol_name!r} in condition {text!r}; known names: {known}"
        ) from None
    except rule_engine.errors.RuleSyntaxError as error:
        raise RuleError(f"{where}: syntax error in condition {text!r}: {error.message}") from None
    except rule_engine.errors.EvaluationError as error:
        raise RuleError(f"{where}: invalid condition {text!r}: {error.message}") from None
    return Condition(text=text, _rule=rule, test=translate(rule.statement.expression))
