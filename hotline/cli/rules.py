"""`hotline rules ...`: validate the rule files, run their example cases, list and show stored versions."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlmodel import Session

from hotline.clock import SHANGHAI, isoformat, local, now
from hotline.config import ConfigError, Settings, load_settings
from hotline.rules import versions as rule_versions
from hotline.rules.expressions import RuleError
from hotline.rules.lint import lint_rules
from hotline.rules.loader import CASES_DIR, PRIORITY_FILE, load_cases, load_rule_set, rule_set_version, run_case
from hotline.rules.readonly import DatabaseMissing, read_only_engine
from hotline.rules.simulate import SimulationReport, parse_period, simulate

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
    """运行 tests/ 和 tests/dispatch/ 中的示例工单 (run the example tickets of the priority and dispatch rules)."""
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
    dispatch_total, dispatch_failures = _run_dispatch_case_files(rules_dir)
    total, failures = total + dispatch_total, failures + dispatch_failures
    if failures:
        click.echo(f"{failures}/{total} 个用例未通过 / {failures} of {total} cases failed", err=True)
        raise SystemExit(1)
    click.echo(f"OK {total} 个用例全部通过 / {total} cases passed ({rule_set.version})")


@rules.command("simulate")
@_RULES_OPTION
@click.option("--since", "period", default="30d", show_default=True,
              help="重放最近多长时间内创建的工单，整数天或小时，如 30d、7d、12h / period of ticket creation to replay")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="输出格式 / output format")
def simulate_command(rules_dir: Path | None, period: str, output_format: str) -> None:
    """用候选规则重放已存工单，列出会改变的优先级、队内排序和 SLA 策略；只读 (replay stored tickets, read-only).

    \b
    每张工单按规则最后一次评估它时（受理时，或来电菜单选择时）的事实重放：
    工单字段与转介来源、当时的标签、评估前的优先级、由通话和状态事件重建的当时来电次数与未办结工单，
    以及候选规则目录中 workday 日历在当时的工作时间与节假日。
    Each ticket is replayed with the facts it had when the rules last evaluated it, rebuilt from its
    stored fields, calls and status events.
    """
    settings = _load_settings()
    rules_dir = rules_dir or settings.rules_dir
    try:
        length = parse_period(period)
    except ValueError as error:
        raise click.BadParameter(f"时间段无效 / {error}", param_hint="--since") from None

    errors = check_rule_files(rules_dir, settings.timezone)
    if errors:
        for line in errors:
            click.echo(line, err=True)
        click.echo(f"规则文件有 {len(errors)} 处错误 / {len(errors)} errors in {rules_dir}", err=True)
        raise SystemExit(1)

    rule_set, policies, calendars = _load_candidate(rules_dir, settings.timezone)
    until = now()
    with _read_only_session(settings) as session:
        report = simulate(session, rule_set, policies, calendars, until - length, until)

    if output_format == "json":
        click.echo(json.dumps(_report_json(report, rules_dir, settings.timezone), ensure_ascii=False, indent=2))
    else:
        for line in _report_lines(report, rules_dir, settings.timezone):
            click.echo(line)


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

    The priority rules are also linted for unknown values and for dead, conflicting and repeated rules
    (hotline.rules.lint), which loading alone allows. The SLA calendars and policies and the dispatch
    settings are checked only when their modules are part of this installation. sla.yaml is checked
    only after calendars.yaml loaded, since it refers to it.
    """
    errors: list[str] = []
    rule_set = _run_check(errors, "priority.yaml", lambda: load_rule_set(rules_dir))
    if rule_set is not None:
        errors.extend(lint_rules(list(rule_set.rules), str(Path(rules_dir) / PRIORITY_FILE)))

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


def _load_candidate(rules_dir: Path, tz: ZoneInfo):
    from hotline.sla.calendars import load_calendars
    from hotline.sla.policies import load_policies

    calendars = load_calendars(rules_dir / "calendars.yaml", tz)
    return load_rule_set(rules_dir), load_policies(rules_dir / "sla.yaml", calendars), calendars


def _report_lines(report: SimulationReport, rules_dir: Path, tz: ZoneInfo) -> list[str]:
    since = local(report.since, tz).strftime("%Y-%m-%d %H:%M")
    until = local(report.until, tz).strftime("%Y-%m-%d %H:%M")
    lines = [f"候选规则集 {report.candidate_version}（{rules_dir}）",
             f"重放 {since} 至 {until}（{tz.key}）创建的 {report.tickets} 张工单；只读，未写入任何数据。"]
    if report.skipped:
        lines.append(f"另有 {report.skipped} 张工单未经规则评估，未重放。")

    sections = [("优先级变化 priority changes", "priority"), ("队内排序变化 queue rank changes", "queue_rank"),
                ("SLA 策略变化 SLA policy changes", "sla_policy")]
    for title, attribute in sections:
        changed = [change for change in report.changes if getattr(change, attribute) is not None]
        lines.append("")
        lines.append(f"{title}: {len(changed)}")
        for change in changed:
            difference = getattr(change, attribute)
            rules_text = f"  规则 {', '.join(difference.rules)}" if difference.rules else ""
            lines.append(f"  {change.number}  {difference.before} -> {difference.after}{rules_text}")
    lines.append("")
    lines.append(f"评估失败 evaluation errors: {len(report.errors)}")
    lines.extend(f"  {number}  {message}" for number, message in report.errors)

    lines.append("")
    lines.append(f"汇总 summary: 工单 {report.tickets}，优先级变化 {report.count('priority')}"
                 f"（提升 {report.raised}，降低 {report.lowered}），队内排序变化 {report.count('queue_rank')}，"
                 f"SLA 策略变化 {report.count('sla_policy')}，无变化 {report.unchanged}，评估失败 {len(report.errors)}")
    lines.append(f"按各自的规则集版本重放 replayed with own version: {report.reproduced}/"
                 f"{report.replayed_with_own_version} 张与存储结果一致")
    if report.not_reproduced:
        lines.append(f"  不一致 not reproduced: {', '.join(report.not_reproduced)}"
                     "（这些工单当时的事实未能完全重建，其变化可能不只来自规则改动）")
    return lines


def _report_json(report: SimulationReport, rules_dir: Path, tz: ZoneInfo) -> dict[str, Any]:
    def difference(value):
        if value is None:
            return None
        return {"from": value.before, "to": value.after, **({"rules": list(value.rules)} if value.rules else {})}

    return {
        "rule_set": {"version": report.candidate_version, "dir": str(rules_dir)},
        "period": {"since": isoformat(report.since, tz), "until": isoformat(report.until, tz)},
        "summary": {
            "tickets": report.tickets, "skipped": report.skipped,
            "priority_changed": report.count("priority"), "priority_raised": report.raised,
            "priority_lowered": report.lowered, "queue_rank_changed": report.count("queue_rank"),
            "sla_policy_changed": report.count("sla_policy"), "unchanged": report.unchanged,
            "errors": len(report.errors), "replayed_with_own_version": report.replayed_with_own_version,
            "reproduced": report.reproduced,
        },
        "changes": [
            {"number": change.number, "created_at": isoformat(change.created_at, tz),
             "evaluated_at": isoformat(change.evaluated_at, tz), "stored_version": change.stored_version,
             "priority": difference(change.priority), "queue_rank": difference(change.queue_rank),
             "sla_policy": difference(change.sla_policy)}
            for change in report.changes
        ],
        "errors": [{"number": number, "message": message} for number, message in report.errors],
        "not_reproduced": report.not_reproduced,
    }


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


def _run_dispatch_case_files(rules_dir: Path) -> tuple[int, int]:
    """Run the dispatch tables in tests/dispatch/*.yaml and print each failure; return (run, failed)."""
    from hotline.dispatch.cases import CASES_DIR as DISPATCH_CASES_DIR
    from hotline.dispatch.cases import load_dispatch_cases, run_dispatch_case
    from hotline.dispatch.config import load_dispatch_config

    case_files = sorted((rules_dir / DISPATCH_CASES_DIR).glob("*.yaml"))
    if not case_files:
        return 0, 0
    try:
        config = load_dispatch_config(rules_dir / "dispatch.yaml")
    except RuleError as error:
        click.echo(str(error), err=True)
        return 1, 1

    total = failures = 0
    for path in case_files:
        try:
            cases = load_dispatch_cases(path)
        except RuleError as error:
            click.echo(str(error), err=True)
            failures += 1
            continue
        for case in cases:
            total += 1
            try:
                mismatches = run_dispatch_case(config, case)
            except (RuleError, ValueError, KeyError) as error:
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
