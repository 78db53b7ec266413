"""`hotline rules ...`: validate the rule files, run their example cases, list and show stored versions."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlmodel import Session

from hotline.clock import SHANGHAI, local
from hotline.config import ConfigError, Settings, load_settings
from hotline.rules import versions as rule_versions
from hotline.rules.expressions import RuleError
from hotline.rules.loader import CASES_DIR, load_cases, load_rule_set, rule_set_version, run_case
from hotline.rules.readonly import DatabaseMissing, read_only_engine

log = logging.getLogger("hotline.rules")

_RULES_OPTION = click.option(
    "--rules", "rules_dir", type=click.Path(path_type=Path, file_okay=False),
    help="规则目录，默认取 HOTLINE_RULES_DIR / rules directory, default HOTLINE_RULES_DIR (routing_rules/)",
)


@click.group("rules")
def rules() -> None:
    """检查并试运行路由规则文件 (check and test the routing rule files)."""


@rules.command("check")
@_RULES_OPTION
def check_command(rules_dir: Path | None) -> None:
    """加载全部规则文件，打印 "OK <版本>" 或错误 (load every rule file, print "OK <version>" or the errors)."""
    settings = _load_settings()
    rules_dir = rules_dir or settings.rules_dir
    errors = check_rule_files(rules_dir, settings.timezone)
    if errors:
        for line in errors:
            click.echo(line, err=True)
        click.echo(f"规则文件有 {len(errors)} 处错误 / {len(errors)} errors in {rules_dir}", err=True)
        raise SystemExit(1)
    click.echo(f"OK {rule_set_version(rules_dir)}")


@rules.command("test")
@_RULES_OPTION
def test_command(rules_dir: Path | None) -> None:
    """运行 tests/*.yaml 中的示例工单 (run the example tickets in tests/*.yaml)."""
    rules_dir = rules_dir or _load_settings().rules_dir
    try:
        rule_set = load_rule_set(rules_dir)
    except RuleError as error:
        click.echo(str(error), err=True)
        raise SystemExit(1) from None

    case_files = sorted((rules_dir / CASES_DIR).glob("*.yaml"))
    if not case_files:
        click.echo(f"未找到测试用例 / no case files in {rules_dir / CASES_DIR}", err=True)
        raise SystemExit(1)

    total, failures = _run_case_files(rule_set, case_files)
    if failures:
        click.echo(f"{failures}/{total} 个用例未通过 / {failures} of {total} cases failed", err=True)
        raise SystemExit(1)
    click.echo(f"OK {total} 个用例全部通过 / {total} cases passed ({rule_set.version})")


@rules.command("versions")
def versions_command() -> None:
    """列出用过的规则集版本：首次使用时间、工单数、规则目录 (list the rule set versions tickets used)."""
    settings = _load_settings()
    with _read_only_session(settings) as session:
        summaries = rule_versions.list_versions(session)
    if not summaries:
        click.echo("还没有工单用过任何规则集版本 / no ticket has been evaluated yet")
        return

    current = _current_version(settings.rules_dir)
    click.echo("版本 version   首次使用 first used  工单 tickets  规则目录 folder")
    for summary in summaries:
        first_used = local(summary.first_used_at, settings.timezone).strftime("%Y-%m-%d %H:%M") \
            if summary.first_used_at else "-"
        folder = summary.rules_dir if summary.stored else "（文件未保存 / files not stored）"
        marker = "  ← 当前目录 / current folder" if summary.version == current else ""
        click.echo(f"{summary.version:<14} {first_used:<19} {summary.tickets:>12}  {folder}{marker}")


@rules.command("show")
@click.argument("version")
@click.option("--file", "file_name", metavar="NAME", help="只打印这个文件，例如 priority.yaml / print only this file")
def show_command(version: str, file_name: str | None) -> None:
    """打印一个规则集版本的全部规则文件；VERSION 可以是前 4 位以上 (print the files of a stored version)."""
    settings = _load_settings()
    with _read_only_session(settings) as session:
        try:
            row = rule_versions.find_version(session, version)
        except rule_versions.VersionNotFound as error:
            raise click.ClickException(str(error)) from None

    if file_name is not None and file_name not in row.files:
        raise click.ClickException(f"版本 {row.version} 没有文件 {file_name}；有：{', '.join(sorted(row.files))} / "
                                   f"version {row.version} has no file {file_name}")
    first_used = local(row.first_used_at, settings.timezone).strftime("%Y-%m-%d %H:%M:%S %Z")
    click.echo(f"# 规则集版本 {row.version}，首次使用 {first_used}，目录 {row.rules_dir}")
    for name in sorted(row.files):
        if file_name is None or name == file_name:
            click.echo(f"\n# --- {name} ---")
            click.echo(row.files[name].rstrip("\n"))


def check_rule_files(rules_dir: Path, tz: ZoneInfo = SHANGHAI) -> list[str]:
    """Load every rule file in `rules_dir` the way the runtime does; return the error lines.

    The SLA calendars and policies and the dispatch settings are checked only when their modules are
    part of this installation. sla.yaml is checked only after calendars.yaml loaded, since it refers to it.
    """
    errors: list[str] = []
    _run_check(errors, "priority.yaml", lambda: load_rule_set(rules_dir))

    load_calendars = _optional_loader(errors, "hotline.sla.calendars", "load_calendars")
    calendars = None
    if load_calendars is not None:
        calendars = _run_check(errors, "calendars.yaml", lambda: load_calendars(rules_dir / "calendars.yaml", tz))

    load_policies = _optional_loader(errors, "hotline.sla.policies", "load_policies")
    if load_policies is not None and calendars is not None:
        _run_check(errors, "sla.yaml", lambda: load_policies(rules_dir / "sla.yaml", calendars))
    elif load_policies is not None:
        errors.append(f"{rules_dir / 'sla.yaml'}: not checked, because the calendars it refers to did not load")

    load_dispatch_config = _optional_loader(errors, "hotline.dispatch.config", "load_dispatch_config")
    if load_dispatch_config is not None:
        _run_check(errors, "dispatch.yaml", lambda: load_dispatch_config(rules_dir / "dispatch.yaml"))
    return errors


def _optional_loader(errors: list[str], module_name: str, function_name: str) -> Callable | None:
    """Return module_name.function_name, or None when the module does not exist; record import errors."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            log.debug("Skipping the check that needs %s: module not installed", module_name)
        else:
            errors.append(f"{module_name}: import failed: {error}")
        return None
    except ImportError as error:
        errors.append(f"{module_name}: import failed: {error}")
        return None

    loader = getattr(module, function_name, None)
    if loader is None:
        errors.append(f"{module_name}: no function {function_name}")
    return loader


def _run_check(errors: list[str], file_name: str, load: Callable[[], Any]) -> Any:
    """Call `load` and return its result; on any exception record its message lines and return None."""
    try:
        return load()
    except Exception as error:  # noqa: BLE001 - a failing loader is reported with the others, not raised
        lines = str(error).splitlines() or [repr(error)]
        if isinstance(error, RuleError):
            errors.extend(lines)
        else:
            errors.extend(f"{file_name}: {type(error).__name__}: {line}" for line in lines)
        return None


def _run_case_files(rule_set, case_files: Sequence[Path]) -> tuple[int, int]:
    """Run every case and print each failure; return (cases run, cases failed)."""
    total = failures = 0
    for path in case_files:
        try:
            cases = load_cases(path)
        except RuleError as error:
            click.echo(str(error), err=True)
            failures += 1
            continue

        for case in cases:
            total += 1
            try:
                mismatches = run_case(rule_set, case)
            except (RuleError, ValueError) as error:
                mismatches = [f"evaluation failed: {error}"]
            if mismatches:
                failures += 1
                click.echo(f"FAIL {case.location} {case.name}", err=True)
                for line in mismatches:
                    click.echo(f"  {line}", err=True)
    return total, failures


@contextmanager
def _read_only_session(settings: Settings) -> Iterator[Session]:
    try:
        engine = read_only_engine(settings.database_url)
    except DatabaseMissing as error:
        raise click.ClickException(str(error)) from None
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def _current_version(rules_dir: Path) -> str | None:
    try:
        return rule_set_version(rules_dir)
    except RuleError:
        return None


def _load_settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
