"""Dispatch settings from `dispatch.yaml`: offer timeout, on-site needs and ordered targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from hotline.rules.expressions import RuleError
from hotline.sla.calendars import parse_duration
from hotline.vocabulary import AGENCY_KINDS, NEEDS

KNOWN_KEYS = {"offer_timeout", "on_site_needs", "targets"}
TARGET_KEYS = {"id", "description", "kinds"}


@dataclass(frozen=True)
class DispatchTarget:
    id: str
    description: str
    kinds: tuple[str, ...]


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

    return DispatchConfig(timeout, frozenset(needs), tuple(_target(path, spec) for spec in data.get("targets") or []))


def _target(path: Path, spec) -> DispatchTarget:
    if not isinstance(spec, dict) or "id" not in spec:
        raise RuleError(f"{path}: every target needs an id")
    where = f"{path}, target {spec['id']}"
    unknown = set(spec) - TARGET_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}; accepted: {sorted(TARGET_KEYS)}")
    kinds = tuple(spec.get("kinds") or ())
    if not kinds or any(kind not in AGENCY_KINDS for kind in kinds):
        raise RuleError(f"{where}: kinds must list some of {list(AGENCY_KINDS)}")
    return DispatchTarget(id=str(spec["id"]), description=str(spec.get("description", "")), kinds=kinds)
