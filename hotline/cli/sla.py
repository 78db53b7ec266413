"""`hotline sla ...`: compute deadlines and working time on the configured calendars, run the breach sweep."""

from __future__ import annotations

from datetime import datetime

import click

from hotline.cli.language import N_, LocalizedGroup, cli_language, error_message, gettext, join
from hotline.clock import isoformat
from hotline.config import ConfigError, load_settings
from hotline.rules.expressions import RuleError
from hotline.sla.calendars import BusinessCalendar, add_with_pauses, load_calendars, parse_duration

CALENDAR_HELP = N_("Name of a calendar in calendars.yaml.")


@click.group("sla", cls=LocalizedGroup,
             help=N_("SLA clocks: compute deadlines and working time, run the breach sweep."))
def sla() -> None:
    pass


@sla.command("deadline", help=N_("Print the deadline in Beijing time as ISO 8601; when the holiday data of a year "
                                 "is missing, also print (provisional) on standard error."))
@click.option("--start", required=True,
              help=N_("When the clock starts: ISO 8601 with its offset, such as 2026-02-13T16:00:00+08:00."))
@click.option("--duration", required=True, help=N_("Duration, such as 15m, 4h, 8h30m, 90s or 2d (a d is 24 hours)."))
@click.option("--calendar", "calendar_name", default="workday", show_default=True, help=CALENDAR_HELP)
@click.option("--pause", "pauses", multiple=True, metavar="START/END",
              help=N_("Interval in which the clock is paused: two ISO 8601 instants separated by /; repeat for "
                      "several."))
def deadline_command(start: str, duration: str, calendar_name: str, pauses: tuple[str, ...]) -> None:
    calendar = _load_calendar(calendar_name)
    started = _parse_instant(start, "--start")
    try:
        seconds = parse_duration(duration)
    except ValueError:
        message = gettext("Invalid duration %(text)s: write a positive duration such as 15m, 4h, 8h30m, 90s or 2d "
                          "(a d is 24 hours).", text=duration)
        raise click.BadParameter(message, param_hint="--duration") from None

    try:
        deadline = add_with_pauses(calendar, started, seconds, [_parse_pause(text) for text in pauses])
    except ValueError as error:
        raise click.BadParameter(gettext("Invalid pause: %(error)s", error=error_message(error)),
                                 param_hint="--pause") from None

    click.echo(isoformat(deadline.due_at, calendar.tz))
    if deadline.provisional:
        # A fixed marker in both languages, so that scripts can test for it.
        click.echo("(provisional)", err=True)


@sla.command("elapsed",
             help=N_("Print the working time between two instants as HH:MM:SS; the hours may exceed 24."))
@click.option("--start", required=True, help=N_("Start, ISO 8601 with its offset."))
@click.option("--end", required=True, help=N_("End, ISO 8601 with its offset."))
@click.option("--calendar", "calendar_name", default="workday", show_default=True, help=CALENDAR_HELP)
def elapsed_command(start: str, end: str, calendar_name: str) -> None:
    calendar = _load_calendar(calendar_name)
    begin, finish = _parse_instant(start, "--start"), _parse_instant(end, "--end")
    if finish < begin:
        raise click.BadParameter(gettext("Invalid interval: the end %(end)s is before the start %(start)s.",
                                         end=end, start=start), param_hint="--end")
    try:
        elapsed = calendar.elapsed(begin, finish)
    except ValueError as error:
        raise click.BadParameter(gettext("Invalid interval: %(error)s", error=error), param_hint="--end") from None

    hours, rest = divmod(elapsed.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    click.echo(f"{hours:02d}:{minutes:02d}:{seconds:02d}")
    if elapsed.provisional:
        click.echo("(provisional)", err=True)


@sla.command("sweep", help=N_("Run the breach sweep once and print how many clocks it newly flagged as breached."))
def sweep_command() -> None:
    from hotline.runtime import current
    from hotline.sla.sweep import sweep_breaches

    click.echo(sweep_breaches(current()))


@sla.command("explain", help=N_("Explain each SLA clock of a ticket: its policy, calendar, pauses and the deadline "
                                "arithmetic."))
@click.argument("number")
def explain_command(number: str) -> None:
    from sqlmodel import select

    from hotline.clock import now
    from hotline.models import Ticket
    from hotline.runtime import current
    from hotline.sla.explain import explain_ticket

    runtime = current()
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is None:
            raise click.ClickException(gettext("Ticket %(number)s not found.", number=number))
        lines = explain_ticket(session, ticket, runtime.component("sla_policies"), runtime.component("calendars"),
                               now(), gettext, cli_language())
    for line in lines:
        click.echo(line)


def _load_calendar(name: str) -> BusinessCalendar:
    try:
        settings = load_settings()
        calendars = load_calendars(settings.rules_dir / "calendars.yaml", settings.timezone)
    except (ConfigError, RuleError) as error:
        raise click.ClickException(gettext("Invalid configuration: %(error)s", error=error)) from None
    if name not in calendars:
        message = gettext("Calendar %(name)s not found; available: %(names)s.", name=name,
                          names=join(sorted(calendars)))
        raise click.BadParameter(message, param_hint="--calendar")
    return calendars[name]


def _parse_instant(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        message = gettext("Invalid time %(text)s: expected ISO 8601, such as 2026-02-13T16:00:00+08:00.", text=text)
        raise click.BadParameter(message, param_hint=option) from None
    if value.tzinfo is None:
        raise click.BadParameter(gettext("The time %(text)s has no offset: add one, such as +08:00.", text=text),
                                 param_hint=option)
    return value


def _parse_pause(text: str) -> tuple[datetime, datetime]:
    begin, separator, end = text.partition("/")
    if not separator:
        raise click.BadParameter(gettext("Invalid pause %(text)s: expected two instants as START/END.", text=text),
                                 param_hint="--pause")
    return _parse_instant(begin, "--pause"), _parse_instant(end, "--pause")
