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

from hotline.cli.language import N_, LocalizedGroup, error_message, gettext, ngettext
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
    help=N_("Rules directory; defaults to HOTLINE_RULES_DIR (routing_rules/)."),
)
SECTIONS = ((N_("Priority changes"), "priority"), (N_("Queue rank changes"), "queue_rank"),
            (N_("SLA policy changes"), "sla_policy"))


@click.group("rules", cls=LocalizedGroup, help=N_("Check and test the routing rule files."))
def rules() -> None:
    pass


@rules.command("check", help=N_("Load every rule file and print \"OK <version>\" or the errors."))
@_RULES_OPTION
def check_command(rules_dir: Path | None) -> None:
    settings = _load_settings()
    rules_dir = rules_dir or settings.rules_dir
    errors = check_rule_files(rules_dir, settings.timezone)
    if errors:
        _print_errors(errors, rules_dir)
        raise SystemExit(1)
    # "OK <version>" is the same in both languages, so that scripts can test for it.
    click.echo(f"OK {rule_set_version(rules_dir)}")


def _print_errors(errors: list[str], rules_dir: Path) -> None:
    for line in errors:
        click.echo(line, err=True)
    click.echo(ngettext("%(num)d error in the rule files in %(dir)s", "%(num)d errors in the rule files in %(dir)s",
                        len(errors), dir=rules_dir), err=True)


@rules.command("test", help=N_("Run the example tickets of the priority and dispatch rules, in tests/ and "
                               "tests/dispatch/."))
@_RULES_OPTION
def test_command(rules_dir: Path | None) -> None:
    rules_dir = rules_dir or _load_settings().rules_dir
    try:
        rule_set = load_rule_set(rules_dir)
    except RuleError as error:
        click.echo(str(error), err=True)
        raise SystemExit(1) from None

    case_files = sorted((rules_dir / CASES_DIR).glob("*.yaml"))
    if not case_files:
        click.echo(gettext("No case files in %(dir)s", dir=rules_dir / CASES_DIR), err=True)
        raise SystemExit(1)

    total, failures = _run_case_files(rule_set, case_files)
    dispatch_total, dispatch_failures = _run_dispatch_case_files(rules_dir)
    total, failures = total + dispatch_total, failures + dispatch_failures
    if failures:
        click.echo(ngettext("%(failures)d of %(num)d case failed", "%(failures)d of %(num)d cases failed", total,
                            failures=failures), err=True)
        raise SystemExit(1)
    click.echo(ngettext("OK: %(num)d case passed (%(version)s)", "OK: %(num)d cases passed (%(version)s)", total,
                        version=rule_set.version))


@rules.command("simulate", help=N_(
    "Replay stored tickets under the candidate rules and list the priorities, queue ranks and SLA policies that "
    "would change. Read-only.\n\n"
    "Each ticket is replayed with the facts it had when the rules last evaluated it, at intake or at the caller's "
    "choice in the phone menu: its fields and referral source, its tags and its priority before that evaluation, "
    "the caller's calls and open tickets at the time (rebuilt from the calls and status events), and the working "
    "hours and holidays of the workday calendar in the candidate rules directory."))
@_RULES_OPTION
@click.option("--since", "period", default="30d", show_default=True,
              help=N_("Replay the tickets created within this period: whole days or hours, such as 30d, 7d or 12h."))
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help=N_("Output format."))
def simulate_command(rules_dir: Path | None, period: str, output_format: str) -> None:
    settings = _load_settings()
    rules_dir = rules_dir or settings.rules_dir
    try:
        length = parse_period(period)
    except ValueError:
        message = gettext("Invalid period %(text)s: write a whole number of days or hours, such as 30d or 12h.",
                          text=period)
        raise click.BadParameter(message, param_hint="--since") from None

    errors = check_rule_files(rules_dir, settings.timezone)
    if errors:
        _print_errors(errors, rules_dir)
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


@rules.command("versions", help=N_("List the rule set versions that tickets used: first use, number of tickets and "
                                    "rules directory."))
def versions_command() -> None:
    from hotline.cli.agencies import format_table

    settings = _load_settings()
    with _read_only_session(settings) as session:
        summaries = rule_versions.list_versions(session)
    if not summaries:
        click.echo(gettext("No ticket has been evaluated under any rule set version yet."))
        return

    current = _current_version(settings.rules_dir)
    table = []
    for summary in summaries:
        first_used = local(summary.first_used_at, settings.timezone).strftime("%Y-%m-%d %H:%M") \
            if summary.first_used_at else "-"
        folder = summary.rules_dir if summary.stored else gettext("(files not stored)")
        marker = "  " + gettext("← current folder") if summary.version == current else ""
        table.append((summary.version, first_used, str(summary.tickets), folder + marker))
    headers = (gettext("Version"), gettext("First used"), gettext("Tickets"), gettext("Rules directory"))
    for line in format_table(headers, table):
        click.echo(line)


@rules.command("show", help=N_("Print every rule file of a stored rule set version; VERSION may be its first 4 or "
                               "more characters."))
@click.argument("version")
@click.option("--file", "file_name", metavar="NAME", help=N_("Print only this file, such as priority.yaml."))
def show_command(version: str, file_name: str | None) -> None:
    settings = _load_settings()
    with _read_only_session(settings) as session:
        try:
            row = rule_versions.find_version(session, version)
        except rule_versions.VersionNotFound as error:
            raise click.ClickException(error_message(error)) from None

    if file_name is not None and file_name not in row.files:
        raise click.ClickException(gettext("Version %(version)s has no file %(file)s; its files: %(files)s.",
                                           version=row.version, file=file_name, files=", ".join(sorted(row.files))))
    first_used = local(row.first_used_at, settings.timezone).strftime("%Y-%m-%d %H:%M:%S %Z")
    click.echo("# " + gettext("Rule set version %(version)s, first used %(first_used)s, directory %(dir)s",
                              version=row.version, first_used=first_used, dir=row.rules_dir))
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
        errors.append(gettext("%(file)s: not checked, because the calendars it refers to did not load",
                              file=rules_dir / "sla.yaml"))

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
            errors.append(gettext("%(module)s: import failed: %(error)s", module=module_name, error=error))
        return None
    except ImportError as error:
        errors.append(gettext("%(module)s: import failed: %(error)s", module=module_name, error=error))
        return None

    loader = getattr(module, function_name, None)
    if loader is None:
        errors.append(gettext("%(module)s: no function %(function)s", module=module_name, function=function_name))
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
    lines = [gettext("Candidate rule set %(version)s (%(dir)s)", version=report.candidate_version, dir=rules_dir),
             ngettext("Replayed %(num)d ticket created from %(since)s to %(until)s (%(zone)s); read-only, nothing "
                      "was written.",
                      "Replayed %(num)d tickets created from %(since)s to %(until)s (%(zone)s); read-only, nothing "
                      "was written.", report.tickets, since=since, until=until, zone=tz.key)]
    if report.skipped:
        lines.append(ngettext("%(num)d more ticket was never evaluated by the rules, so it was not replayed.",
                              "%(num)d more tickets were never evaluated by the rules, so they were not replayed.",
                              report.skipped))

    for title, attribute in SECTIONS:
        changed = [change for change in report.changes if getattr(change, attribute) is not None]
        lines.append("")
        lines.append(_count_line(gettext(title), len(changed)))
        for change in changed:
            difference = getattr(change, attribute)
            rules_text = "  " + gettext("rules %(rules)s", rules=", ".join(difference.rules)) if difference.rules \
                else ""
            lines.append(f"  {change.number}  {difference.before} -> {difference.after}{rules_text}")
    lines.append("")
    lines.append(_count_line(gettext("Evaluation errors"), len(report.errors)))
    lines.extend(f"  {number}  {message}" for number, message in report.errors)

    lines.append("")
    lines.append(gettext("Summary: tickets %(tickets)s, priority changes %(priority)s (raised %(raised)s, "
                         "lowered %(lowered)s), queue rank changes %(rank)s, SLA policy changes %(policy)s, "
                         "unchanged %(unchanged)s, evaluation errors %(errors)s",
                         tickets=report.tickets, priority=report.count("priority"), raised=report.raised,
                         lowered=report.lowered, rank=report.count("queue_rank"), policy=report.count("sla_policy"),
                         unchanged=report.unchanged, errors=len(report.errors)))
    lines.append(gettext("Replayed with their own rule set version: %(reproduced)s of %(replayed)s match the stored "
                         "results", reproduced=report.reproduced, replayed=report.replayed_with_own_version))
    if report.not_reproduced:
        lines.append("  " + gettext("Not reproduced: %(numbers)s (the facts of these tickets at the time could not "
                                    "be fully rebuilt, so their changes may come from more than the rule change)",
                                    numbers=", ".join(report.not_reproduced)))
    return lines


def _count_line(name: str, count: int) -> str:
    # TRANSLATORS: a heading or a label and its number, such as "Priority changes: 2".
    return gettext("%(name)s: %(count)s", name=name, count=count)


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
                mismatches = [gettext("Evaluation failed: %(error)s", error=error)]
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
                mismatches = [gettext("Evaluation failed: %(error)s", error=error)]
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
        raise click.ClickException(error_message(error)) from None
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
        raise click.ClickException(gettext("Invalid configuration: %(error)s", error=error)) from None
