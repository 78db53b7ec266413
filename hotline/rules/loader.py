"""Read and validate priority.yaml and the example cases in tests/*.yaml next to it.

Files are parsed into YAML nodes first (yaml.compose), so every error can name the line it is on.
A file's errors are collected and raised together as one RuleError, one `file:line: problem` per line.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from hotline.rules import versions
from hotline.rules.engine import LEAST_URGENT, MOST_URGENT, Rule, RuleSet, priority_label
from hotline.rules.expressions import RuleError, compile_condition
from hotline.rules.facts import facts_with_defaults
from hotline.vocabulary import PRIORITIES

log = logging.getLogger("hotline.rules")

PRIORITY_FILE = "priority.yaml"
CASES_DIR = "tests"

_RULE_FILE_KEYS = ("defaults", "rules")
_DEFAULTS_KEYS = ("priority", "queue_rank")
_RULE_KEYS = ("id", "description", "description_en", "when", "set", "raise", "add_tags")
_SET_KEYS = ("priority", "queue_rank")
_CASE_FILE_KEYS = ("cases",)
_CASE_KEYS = ("name", "note", "facts", "expect")
_EXPECT_KEYS = ("priority", "queue_rank", "fired", "added_tags")

_RULE_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_TAG = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_RAISE = LEAST_URGENT - MOST_URGENT


@dataclass(frozen=True)
class RuleCase:
    """An example ticket from tests/*.yaml with the outcome the rules must give it."""

    name: str
    location: str
    facts: dict[str, Any]
    priority: int
    queue_rank: int
    fired: tuple[str, ...]
    added_tags: tuple[str, ...]


def rule_set_version(rules_dir: Path) -> str:
    """Return the first 12 hex digits of a SHA-256 over the name and bytes of every *.yaml in `rules_dir`.

    Files are taken in name order and subdirectories are not read, so the example cases in tests/ do
    not change the version.
    """
    return _digest(_read_rule_files(Path(rules_dir)))


def load_rule_set(rules_dir: Path) -> RuleSet:
    """Load and validate rules_dir/priority.yaml; raise RuleError listing every problem found."""
    rules_dir = Path(rules_dir)
    rule_set = rule_set_from_files(_read_rule_files(rules_dir), rules_dir)
    versions.remember_loaded(rule_set)
    log.info("Loaded rule set %s from %s with %d rules", rule_set.version, rule_set.source, len(rule_set.rules))
    return rule_set


def rule_set_from_files(files: Mapping[str, bytes], origin: Path) -> RuleSet:
    """Build the rule set from the *.yaml files of a rules folder, given as name -> content.

    `origin` is the folder the files came from; error messages name files inside it. The version is
    computed from `files` exactly as rule_set_version computes it from the folder.
    """
    files = dict(sorted(files.items()))
    path = Path(origin) / PRIORITY_FILE
    if PRIORITY_FILE not in files:
        raise RuleError(f"{path}: file not found")

    reader = _Reader(path)
    root = reader.compose(files[PRIORITY_FILE])
    rule_set = _parse_rule_file(reader, root, _digest(files), files) if root is not None else None
    reader.raise_errors()
    return rule_set


def load_cases(path: Path) -> list[RuleCase]:
    """Load the example cases of one file such as routing_rules/tests/priority.yaml; raise RuleError on problems."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RuleError(f"{path}: cannot read the file: {error.strerror}") from None

    reader = _Reader(path)
    root = reader.compose(data)
    cases = _parse_case_file(reader, root) if root is not None else []
    reader.raise_errors()
    return cases


def _read_rule_files(rules_dir: Path) -> dict[str, bytes]:
    if not rules_dir.is_dir():
        raise RuleError(f"{rules_dir}: rules directory not found")
    paths = sorted((p for p in rules_dir.glob("*.yaml") if p.is_file()), key=lambda p: p.name)
    try:
        return {p.name: p.read_bytes() for p in paths}
    except OSError as error:
        raise RuleError(f"{error.filename}: cannot read the file: {error.strerror}") from None


def _digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(data + b"\0")
    return digest.hexdigest()[:12]


class _Reader:
    """Walks the composed nodes of one file and collects `file:line: problem` messages."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"

    def error(self, node: yaml.Node, message: str) -> None:
        self.errors.append(f"{self.where(node)}: {message}")

    def raise_errors(self) -> None:
        if self.errors:
            raise RuleError("\n".join(self.errors))

    def compose(self, data: bytes) -> yaml.Node | None:
        """Parse `data` into a node tree; on invalid UTF-8 or YAML or an empty file, record an error and return None."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self.errors.append(f"{self.path}: invalid UTF-8 at byte {error.start}")
            return None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            self.errors.append(f"{self.path}{line}: invalid YAML: {error.problem}")
            return None
        if root is None:
            self.errors.append(f"{self.path}:1: file is empty")
            return None
        return root

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, yaml.Node] | None:
        """Return the values of a mapping node by key, reporting unknown, duplicate and missing keys."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping with the keys {', '.join(allowed)}")
            return None
        values: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in allowed:
                self.error(key_node, f"{what}: unknown key {key!r}; expected one of {', '.join(allowed)}")
            elif key in values:
                self.error(key_node, f"{what}: duplicate key {key!r}")
            else:
                values[key] = value_node
        for key in required:
            if key not in values:
                self.error(node, f"{what}: missing key {key!r}")
        return values

    def value(self, node: yaml.Node) -> Any:
        """Build the Python value of a node with PyYAML's safe constructor."""
        try:
            return SafeConstructor().construct_object(node, deep=True)
        except ConstructorError as error:
            self.error(node, f"invalid value: {error.problem}")
            return None

    def text(self, node: yaml.Node, what: str) -> str | None:
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            self.error(node, f"{what} must be a non-empty string, not {value!r}")
            return None
        return value

    def priority(self, node: yaml.Node, what: str) -> int | None:
        value = self.value(node)
        if value not in PRIORITIES:
            self.error(node, f"{what}: invalid priority {value!r}; expected one of {', '.join(PRIORITIES)}")
            return None
        return PRIORITIES.index(value) + 1

    def integer(self, node: yaml.Node, what: str, minimum: int, maximum: int | None = None) -> int | None:
        value = self.value(node)
        in_range = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        if not in_range or (maximum is not None and value > maximum):
            limit = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            self.error(node, f"{what} must be an integer {limit}, not {value!r}")
            return None
        return value

    def strings(self, node: yaml.Node, what: str, pattern: re.Pattern | None = None) -> tuple[str, ...] | None:
        value = self.value(node)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.error(node, f"{what} must be a list of strings, not {value!r}")
            return None
        bad = [item for item in value if pattern is not None and not pattern.match(item)]
        if bad:
            self.error(node, f"{what}: invalid value {', '.join(map(repr, bad))}; expected {pattern.pattern}")
            return None
        return tuple(value)


def _parse_rule_file(reader: _Reader, root: yaml.Node, version: str, files: dict[str, bytes]) -> RuleSet | None:
    top = reader.mapping(root, "rule file", _RULE_FILE_KEYS, required=_RULE_FILE_KEYS)
    if top is None:
        return None

    default_priority, default_queue_rank = _parse_defaults(reader, top.get("defaults"))
    rules = _parse_rules(reader, top.get("rules"))
    if reader.errors:
        return None
    return RuleSet(version=version, source=str(reader.path), default_priority=default_priority,
                   default_queue_rank=default_queue_rank, rules=tuple(rules), files=files)


def _parse_defaults(reader: _Reader, node: yaml.Node | None) -> tuple[int | None, int | None]:
    if node is None:
        return None, None
    values = reader.mapping(node, "defaults", _DEFAULTS_KEYS, required=_DEFAULTS_KEYS)
    if not values:
        return None, None
    priority = reader.priority(values["priority"], "defaults") if "priority" in values else None
    queue_rank = reader.integer(values["queue_rank"], "defaults: queue_rank", 0) if "queue_rank" in values else None
    return priority, queue_rank


def _parse_rules(reader: _Reader, node: yaml.Node | None) -> list[Rule]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        reader.error(node, "rules must be a list of rules")
        return []

    rules: list[Rule] = []
    first_line_of: dict[str, int] = {}
    for index, rule_node in enumerate(node.value, start=1):
        rule = _parse_rule(reader, rule_node, index, first_line_of)
        if rule is not None:
            rules.append(rule)
    return rules


def _parse_rule(reader: _Reader, node: yaml.Node, index: int, first_line_of: dict[str, int]) -> Rule | None:
    """Validate one rule; `first_line_of` maps the ids seen so far to their lines, to report duplicates."""
    rule_id = _rule_id(reader, node, index, first_line_of)
    label = f"rule {rule_id}" if rule_id else f"rule #{index}"
    errors_before = len(reader.errors)
    values = reader.mapping(node, label, _RULE_KEYS, required=("id", "description", "when"))
    if values is None:
        return None

    description = None
    if "description" in values:
        description = reader.text(values["description"], f"{label}: description")
    description_en = ""
    if "description_en" in values:
        description_en = reader.text(values["description_en"], f"{label}: description_en")
    condition = None
    if "when" in values:
        try:
            condition = compile_condition(reader.value(values["when"]), f"{reader.where(values['when'])}: {label}")
        except RuleError as error:
            reader.errors.append(str(error))
    effects = _parse_effects(reader, values, label)

    # A misspelt effect key is already reported as unknown; "no effect" would only repeat it.
    if len(reader.errors) == errors_before and not any(key in values for key in ("set", "raise", "add_tags")):
        reader.error(node, f"{label}: no effect; give at least one of set, raise, add_tags")
    if len(reader.errors) > errors_before or not rule_id:
        return None
    return Rule(id=rule_id, description=description, description_en=description_en or "", condition=condition,
                line=node.start_mark.line + 1, **effects)


def _rule_id(reader: _Reader, node: yaml.Node, index: int, first_line_of: dict[str, int]) -> str | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    id_node = next((value for key, value in node.value if getattr(key, "value", None) == "id"), None)
    if id_node is None:
        return None  # reported as a missing key by _Reader.mapping

    rule_id = reader.value(id_node)
    if not isinstance(rule_id, str) or not _RULE_ID.match(rule_id):
        reader.error(id_node, f"rule #{index}: invalid id {rule_id!r}; expected lower-case words joined by '-'")
        return None
    if rule_id in first_line_of:
        reader.error(id_node, f"rule {rule_id}: duplicate id, first used on line {first_line_of[rule_id]}")
        return None
    first_line_of[rule_id] = id_node.start_mark.line + 1
    return rule_id


def _parse_effects(reader: _Reader, values: dict[str, yaml.Node], label: str) -> dict[str, Any]:
    effects: dict[str, Any] = {}
    if "set" in values:
        settings = reader.mapping(values["set"], f"{label}: set", _SET_KEYS) or {}
        if isinstance(values["set"], yaml.MappingNode) and not values["set"].value:
            reader.error(values["set"], f"{label}: set is empty; give priority or queue_rank")
        if "priority" in settings:
            effects["set_priority"] = reader.priority(settings["priority"], f"{label}: set")
        if "queue_rank" in settings:
            effects["set_queue_rank"] = reader.integer(settings["queue_rank"], f"{label}: set.queue_rank", 0)
    if "raise" in values:
        effects["raise_steps"] = reader.integer(values["raise"], f"{label}: raise", 1, MAX_RAISE)
    if "add_tags" in values:
        tags = reader.strings(values["add_tags"], f"{label}: add_tags", _TAG)
        if tags is not None and not tags:
            reader.error(values["add_tags"], f"{label}: add_tags is empty")
        effects["add_tags"] = tags or ()
    return effects


def _parse_case_file(reader: _Reader, root: yaml.Node) -> list[RuleCase]:
    top = reader.mapping(root, "case file", _CASE_FILE_KEYS, required=_CASE_FILE_KEYS)
    if not top:
        return []
    node = top["cases"]
    if not isinstance(node, yaml.SequenceNode):
        reader.error(node, "cases must be a list of cases")
        return []

    cases: list[RuleCase] = []
    for index, case_node in enumerate(node.value, start=1):
        case = _parse_case(reader, case_node, index)
        if case is None:
            continue
        if any(case.name == earlier.name for earlier in cases):
            reader.error(case_node, f"case {case.name}: duplicate name")
        cases.append(case)
    return cases


def _parse_case(reader: _Reader, node: yaml.Node, index: int) -> RuleCase | None:
    values = reader.mapping(node, f"case #{index}", _CASE_KEYS, required=("name", "facts", "expect"))
    if not values or "name" not in values:
        return None
    name = reader.text(values["name"], f"case #{index}: name")
    label = f"case {name or '#' + str(index)}"
    errors_before = len(reader.errors)

    facts = None
    if "facts" in values:
        raw_facts = reader.value(values["facts"])
        try:
            if not isinstance(raw_facts, dict):
                raise ValueError(f"facts must be a mapping of fact names to values, not {raw_facts!r}")
            facts = facts_with_defaults(raw_facts)
        except ValueError as error:
            reader.error(values["facts"], f"{label}: {error}")
    expect = reader.mapping(values["expect"], f"{label}: expect", _EXPECT_KEYS,
                            required=("priority", "queue_rank", "fired")) if "expect" in values else None
    if not expect or len(reader.errors) > errors_before:
        return None

    priority = reader.priority(expect["priority"], f"{label}: expect")
    queue_rank = reader.integer(expect["queue_rank"], f"{label}: expect.queue_rank", 0)
    fired = reader.strings(expect["fired"], f"{label}: expect.fired", _RULE_ID)
    added_tags = reader.strings(expect["added_tags"], f"{label}: expect.added_tags", _TAG) \
        if "added_tags" in expect else ()
    if len(reader.errors) > errors_before:
        return None
    return RuleCase(name=name, location=reader.where(node), facts=facts, priority=priority,
                    queue_rank=queue_rank, fired=fired, added_tags=added_tags)


def run_case(rule_set: RuleSet, case: RuleCase) -> list[str]:
    """Evaluate one example case; return one "what: expected X, actual Y" line per mismatch."""
    decision = rule_set.evaluate_priority(case.facts)
    fired = [step["rule"] for step in decision.trace if step["matched"]]
    mismatches: list[str] = []

    if decision.priority != case.priority:
        mismatches.append(f"priority: expected {priority_label(case.priority)}, "
                          f"actual {priority_label(decision.priority)}")
    if decision.queue_rank != case.queue_rank:
        mismatches.append(f"queue_rank: expected {case.queue_rank}, actual {decision.queue_rank}")
    if set(fired) != set(case.fired):
        mismatches.append(f"fired: expected [{', '.join(case.fired)}], actual [{', '.join(fired)}]")
    if set(decision.added_tags) != set(case.added_tags):
        mismatches.append(f"added_tags: expected [{', '.join(case.added_tags)}], "
                          f"actual [{', '.join(decision.added_tags)}]")
    return mismatches
