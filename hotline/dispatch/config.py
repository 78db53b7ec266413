"""Dispatch settings from `dispatch.yaml`: offer timeout, on-site needs and ordered targets.

A target names the agencies it may offer a ticket to: their `kinds`, and an optional `select`
condition over each agency, written in the same rule-engine language as the priority rules. A `when`
condition over the ticket's facts decides whether the target applies to a ticket at all. `timeout`
sets how long its offers stay open, and `skip_if` says when dispatch moves on to the next target:
`nobody_eligible` (always) and `all_at_capacity` (agencies match but every one is busy). A target
without `all_at_capacity` in `skip_if` holds the ticket until one of its agencies is free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rule_engine
import yaml

from hotline.rules.expressions import Condition, RuleError, compile_condition
from hotline.sla.calendars import parse_duration
from hotline.vocabulary import AGENCY_KINDS, NEEDS

KNOWN_KEYS = {"offer_timeout", "on_site_needs", "targets"}
TARGET_KEYS = {"id", "description", "kinds", "when", "select", "timeout", "skip_if"}
SKIP_REASONS = ("nobody_eligible", "all_at_capacity")

# The facts a target's `select` condition reads about one agency.
AGENCY_FACTS: dict[str, Any] = {
    "kind": rule_engine.DataType.STRING,
    "name": rule_engine.DataType.STRING,
    "status": rule_engine.DataType.STRING,
    "services": rule_engine.DataType.ARRAY(rule_engine.DataType.STRING),
    "chosen": rule_engine.DataType.BOOLEAN,
    "serves_all_towns": rule_engine.DataType.BOOLEAN,
}
_AGENCY_CONTEXT = rule_engine.Context(type_resolver=rule_engine.type_resolver_from_dict(AGENCY_FACTS))


@dataclass(frozen=True)
class AgencySelector:
    """A compiled `select` condition over the facts of one agency (see AGENCY_FACTS)."""

    text: str
    _rule: rule_engine.Rule = field(repr=False)

    def matches(self, facts: Mapping[str, Any]) -> bool:
        return bool(self._rule.matches(facts))


@dataclass(frozen=True)
class DispatchTarget:
    id: str
    description: str
    kinds: tuple[str, ...]
    timeout_seconds: int
    when: Condition | None = None
    select: AgencySelector | None = None
    skip_if: frozenset[str] = frozenset(SKIP_REASONS)

    def applies_to(self, ticket_facts: Mapping[str, Any]) -> bool:
        return self.when is None or self.when.matches(ticket_facts)

    def selects(self, agency_facts: Mapping[str, Any]) -> bool:
        return self.select is None or self.select.matches(agency_facts)


@dataclass(frozen=True)
class DispatchConfig:
    offer_timeout_seconds: int
    on_site_needs: frozenset[str]
    targets: tuple[DispatchTarget, ...]


def load_dispatch_config(path: Path) -> DispatchConfig:
    """Read and check `path`; raise RuleError naming the file and the problem."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise RuleError(f"{path}: cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise RuleError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise RuleError(f"{path}: unknown keys {sorted(unknown)}; accepted: {sorted(KNOWN_KEYS)}")

    try:
        timeout = parse_duration(str(data.get("offer_timeout", "15m")))
    except ValueError as error:
        raise RuleError(f"{path}: offer_timeout: {error}") from None

    needs = data.get("on_site_needs") or []
    bad_needs = [need for need in needs if need not in NEEDS]
    if bad_needs:
        raise RuleError(f"{path}: on_site_needs: unknown needs {bad_needs}; accepted: {sorted(NEEDS)}")

    targets = tuple(_target(path, spec, timeout) for spec in data.get("targets") or [])
    ids = [target.id for target in targets]
    duplicates = sorted({target_id for target_id in ids if ids.count(target_id) > 1})
    if duplicates:
        raise RuleError(f"{path}: target ids must be unique; repeated: {duplicates}")
    return DispatchConfig(timeout, frozenset(needs), targets)


def _target(path: Path, spec, default_timeout: int) -> DispatchTarget:
    if not isinstance(spec, dict) or "id" not in spec:
        raise RuleError(f"{path}: every target needs an id")
    where = f"{path}, target {spec['id']}"
    unknown = set(spec) - TARGET_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}; accepted: {sorted(TARGET_KEYS)}")
    kinds = tuple(spec.get("kinds") or ())
    if not kinds or any(kind not in AGENCY_KINDS for kind in kinds):
        raise RuleError(f"{where}: kinds must list some of {list(AGENCY_KINDS)}")

    return DispatchTarget(
        id=str(spec["id"]),
        description=str(spec.get("description", "")),
        kinds=kinds,
        timeout_seconds=_timeout(spec, where, default_timeout),
        when=compile_condition(spec["when"], f"{where}, when") if "when" in spec else None,
        select=_selector(spec["select"], where) if "select" in spec else None,
        skip_if=_skip_reasons(spec, where),
    )


def _timeout(spec: Mapping[str, Any], where: str, default: int) -> int:
    if "timeout" not in spec:
        return default
    try:
        return parse_duration(str(spec["timeout"]))
    except ValueError as error:
        raise RuleError(f"{where}: timeout: {error}") from None


def _skip_reasons(spec: Mapping[str, Any], where: str) -> frozenset[str]:
    reasons = spec.get("skip_if", list(SKIP_REASONS))
    if isinstance(reasons, str):
        reasons = [reasons]
    unknown = [reason for reason in reasons if reason not in SKIP_REASONS]
    if unknown:
        raise RuleError(f"{where}: skip_if: unknown values {unknown}; accepted: {list(SKIP_REASONS)}")
    return frozenset(reasons) | {"nobody_eligible"}


def _selector(text: Any, where: str) -> AgencySelector:
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"{where}: select must be a condition string")
    try:
        return AgencySelector(text, rule_engine.Rule(text, context=_AGENCY_CONTEXT))
    except rule_engine.errors.SymbolResolutionError as error:
        known = ", ".join(sorted(AGENCY_FACTS))
        raise RuleError(f"{where}: unknown name {error.symbol_name!r} in select {text!r}; known names: {known}") \
            from None
    except (rule_engine.errors.RuleSyntaxError, rule_engine.errors.EvaluationError) as error:
        raise RuleError(f"{where}: invalid select {text!r}: {error.message}") from None
