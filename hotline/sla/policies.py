"""SLA policies from sla.yaml: which targets a ticket gets, how long each may take, on which calendar."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hotline.rules.compiled import prepare_facts
from hotline.rules.expressions import FACT_KINDS, Condition, RuleError, compile_condition
from hotline.sla.calendars import BusinessCalendar, parse_duration
from hotline.vocabulary import PRIORITIES

_WORKING_DAYS = re.compile(r"(\d+) working days?")
_POLICY_KEYS = ("id", "description", "condition", "calendar", "targets", "pause_while_waiting")
_PRIORITY_SETTINGS = ("calendar", "warn_before")

# Target -> who must meet it. A clock of the hotline waits on operators, one of the agency on the agency.
TARGET_OWNERS = {
    "first_response": "hotline",
    "dispatch_accept": "agency",
    "on_site": "agency",
    "resolution": "hotline",
    "follow_up": "hotline",
}
TARGETS = tuple(TARGET_OWNERS)


@dataclass(frozen=True)
class TargetSpec:
    target: str
    duration_seconds: int
    calendar: str
    warn_before_seconds: int | None = None

    @property
    def owner(self) -> str:
        return TARGET_OWNERS[self.target]

    @property
    def warn_offset_seconds(self) -> int | None:
        """Working seconds from the start to the warning, or None when the target is not longer than the lead."""
        if self.warn_before_seconds is None or self.warn_before_seconds >= self.duration_seconds:
            return None
        return self.duration_seconds - self.warn_before_seconds


@dataclass(frozen=True)
class Policy:
    id: str
    description: str
    condition: Condition
    targets: dict[str, dict[str, TargetSpec]]
    pause_while_waiting: frozenset[str] = frozenset(
        target for target, owner in TARGET_OWNERS.items() if owner == "hotline")

    def targets_for(self, priority: int) -> dict[str, TargetSpec]:
        return self.targets.get(f"P{priority}", {})


@dataclass(frozen=True)
class PolicySet:
    version: str
    policies: list[Policy]

    def by_id(self, policy_id: str) -> Policy | None:
        return next((policy for policy in self.policies if policy.id == policy_id), None)

    def choose(self, facts: Mapping[str, Any]) -> Policy:
        """Return the first policy whose condition matches `facts` and that lists the facts' priority.

        The loader guarantees a final catch-all, so this raises LookupError only for a priority
        outside P1..P4. Conditions run as compiled closures when the facts have their declared types,
        as the priority rules do (hotline.rules.compiled), and through rule-engine otherwise.
        """
        priority = f"P{int(facts['priority'])}"
        values = prepare_facts(facts, FACT_KINDS)
        for policy in self.policies:
            if priority in policy.targets and _matches(policy.condition, facts, values):
                return policy
        raise LookupError(f"no SLA policy of version {self.version} lists priority {priority}")


def _matches(condition: Condition, facts: Mapping[str, Any], values: dict[str, Any] | None) -> bool:
    if values is None or condition.test is None:
        return condition.matches(facts)
    return condition.test(values)


def load_policies(path: Path, calendars: dict[str, BusinessCalendar]) -> PolicySet:
    """Read sla.yaml, raising RuleError with the file, the policy id and the problem in its message."""
    where = path.name
    document = _read_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("policies"), list) or not document["policies"]:
        raise RuleError(f"{where}: expected a mapping with a non-empty 'policies' list")
    version = document.get("version")
    if not isinstance(version, str | int | float) or not str(version).strip():
        raise RuleError(f"{where}: 'version' is missing: expected a string such as \"2026.1\"")
    working_day = _read_working_day(document.get("working_day"), where)
    warn_before = _read_warn_before(document.get("warn_before"), where)

    policies = []
    for index, raw in enumerate(document["policies"], start=1):
        policy = _build_policy(raw, index, where, calendars, working_day, warn_before)
        if any(existing.id == policy.id for existing in policies):
            raise RuleError(f"{where}, policy {policy.id!r}: the id is used twice")
        policies.append(policy)

    _check_catch_all(policies[-1], where)
    return PolicySet(version=str(version), policies=policies)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RuleError(f"{path}: cannot be read: {error.strerror}") from None
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as error:
        # PyYAML raises ValueError for an impossible date such as 2026-02-30.
        raise RuleError(f"{path.name}: invalid YAML: {error}") from None


def _read_working_day(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    try:
        return parse_duration(str(raw))
    except ValueError as error:
        raise RuleError(f"{where}: working_day: {error}") from None


def _read_warn_before(raw: Any, where: str) -> int | None:
    if raw is None:
        return None
    try:
        return parse_duration(str(raw))
    except ValueError as error:
        raise RuleError(f"{where}: warn_before: {error}") from None


def _build_policy(
    raw: Any, index: int, where: str, calendars: dict[str, BusinessCalendar], working_day: int | None,
    warn_before: int | None,
) -> Policy:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"].strip():
        raise RuleError(f"{where}, policy #{index}: expected a mapping with a non-empty string 'id'")
    where = f"{where}, policy {raw['id']!r}"
    unknown = sorted(set(raw) - set(_POLICY_KEYS))
    if unknown:
        raise RuleError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(_POLICY_KEYS)}")

    condition = compile_condition(raw.get("condition"), where)
    default_calendar = raw.get("calendar")
    targets_raw = raw.get("targets")
    if not isinstance(targets_raw, dict) or not targets_raw:
        raise RuleError(f"{where}: 'targets' is missing: expected a mapping from priority (P1..P4) to targets")

    targets = {}
    for priority, entries in targets_raw.items():
        if priority not in PRIORITIES:
            raise RuleError(f"{where}: priority {priority!r} is invalid: expected one of {', '.join(PRIORITIES)}")
        targets[priority] = _build_targets(entries, f"{where}, {priority}", default_calendar, calendars, working_day,
                                           warn_before)
    policy = Policy(id=raw["id"], description=str(raw.get("description") or ""), condition=condition, targets=targets)
    if "pause_while_waiting" in raw:
        pausing = raw["pause_while_waiting"] or []
        if not isinstance(pausing, list) or any(target not in TARGETS for target in pausing):
            raise RuleError(f"{where}: pause_while_waiting {pausing!r} is invalid: expected a list of "
                            f"{', '.join(TARGETS)}")
        policy = Policy(policy.id, policy.description, condition, targets, frozenset(pausing))
    return policy


def _build_targets(
    raw: Any, where: str, default_calendar: Any, calendars: dict[str, BusinessCalendar], working_day: int | None,
    warn_before: int | None,
) -> dict[str, TargetSpec]:
    """Targets of one priority. A target is "duration" or {duration, calendar}; `calendar` and
    `warn_before` beside the targets apply to all of them."""
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: expected a mapping from target name to duration")
    shared_calendar = raw.get("calendar", default_calendar)
    if "warn_before" in raw:
        warn_before = _read_warn_before(raw["warn_before"], where)

    specs = {}
    for target, value in raw.items():
        if target in _PRIORITY_SETTINGS:
            continue
        if target not in TARGETS:
            raise RuleError(f"{where}: target {target!r} is invalid: expected one of {', '.join(TARGETS)}")
        duration, calendar = value, shared_calendar
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"duration", "calendar"})
            if unknown or "duration" not in value:
                raise RuleError(f"{where}, {target}: expected a duration or a mapping with duration and calendar")
            duration, calendar = value["duration"], value.get("calendar", shared_calendar)
        _check_calendar(calendar, calendars, f"{where}, {target}")
        seconds = _parse_target_duration(duration, working_day, f"{where}, {target}")
        specs[target] = TargetSpec(target=target, duration_seconds=seconds, calendar=calendar,
                                   warn_before_seconds=warn_before)
    if not specs:
        raise RuleError(f"{where}: no targets listed: expected at least one of {', '.join(TARGETS)}")
    return specs


def _check_calendar(calendar: Any, calendars: dict[str, BusinessCalendar], where: str) -> None:
    if calendar not in calendars:
        defined = ", ".join(sorted(calendars))
        raise RuleError(f"{where}: calendar {calendar!r} is not defined; defined calendars: {defined}")


def _parse_target_duration(raw: Any, working_day: int | None, where: str) -> int:
    match = _WORKING_DAYS.fullmatch(str(raw).strip())
    if match is not None:
        if working_day is None:
            raise RuleError(f"{where}: {raw!r} needs 'working_day' at the top of the file, such as working_day: 8h30m")
        if int(match.group(1)) == 0:
            raise RuleError(f"{where}: {raw!r} is zero: expected at least 1 working day")
        return int(match.group(1)) * working_day
    try:
        return parse_duration(str(raw))
    except ValueError as error:
        raise RuleError(f"{where}: {error}, or \"N working days\"") from None


def _check_catch_all(last: Policy, where: str) -> None:
    missing = [priority for priority in PRIORITIES if priority not in last.targets]
    if last.condition.text.strip().lower() != "true" or missing:
        raise RuleError(
            f"{where}, policy {last.id!r}: the last policy must have condition: true and list "
            f"{', '.join(PRIORITIES)} so every ticket gets a policy"
            + (f"; missing {', '.join(missing)}" if missing else "")
        )
