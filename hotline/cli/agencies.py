"""`hotline agencies ...`: the agency registry from the command line, worded like the pages.

Changes name the staff member who makes them (`--by`). The same roles as in the API apply: admins
register and edit agencies, and supervisors and admins change the vetting status.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import click
from sqlmodel import Session, select

from hotline import agencies
from hotline.accounts import ROLE_LABELS
from hotline.agency_fields import SERVICES
from hotline.cli.language import N_, LocalizedGroup, error_message, gettext, join, label, ngettext
from hotline.clock import isoformat, local, now
from hotline.config import ConfigError
from hotline.dispatch import withdrawals
from hotline.models import Agency, Town, User
from hotline.validation import InputError
from hotline.vocabulary import AGENCY_KINDS, DECLINE_REASONS

LIST_HEADERS = (N_("ID"), N_("Agency name"), N_("Kind"), N_("Status"), N_("Towns served"), N_("Capacity"),
                N_("Offer mobile"), N_("Filing expires"), N_("Licence expires"), N_("Receives offers"))


@click.group("agencies", cls=LocalizedGroup,
             help=N_("The funeral agency registry: list, register and edit agencies, change their vetting status "
                     "and read its history."))
def agencies_group() -> None:
    pass


@agencies_group.command("list", help=N_("List every agency as a table."))
@click.option("--status", type=click.Choice(list(agencies.STATUSES)),
              help=N_("List only the agencies with this vetting status."))
def list_command(status: str | None) -> None:
    with _transaction() as (session, runtime):
        query = select(Agency).order_by(Agency.kind, Agency.id)
        if status:
            query = query.where(Agency.status == status)
        rows = session.exec(query).all()
        today = local(now(), runtime.settings.timezone).date()
        towns = _town_names(session)
        table = [_list_row(agency, towns, today) for agency in rows]
    for line in format_table([gettext(header) for header in LIST_HEADERS], table):
        click.echo(line)


def _field_options(required: bool) -> Callable:
    """Build the options of every registration field. With `required`, those every agency needs are required."""
    options = [
        click.option("--name", required=required, help=N_("Agency name, unique.")),
        click.option("--kind", type=click.Choice(AGENCY_KINDS), required=required,
                     help=N_("agency for a funeral agency, funeral_home for the district funeral home's own team.")),
        click.option("--credit-code", help=N_("Unified social credit code of 18 characters; the 18th is a check "
                                              "character (required for agencies).")),
        click.option("--filing-number", help=N_("Filing number (required for agencies).")),
        click.option("--filing-expires-on", metavar="YYYY-MM-DD",
                     help=N_("Date the filing expires; offers stop from that day on (required for agencies).")),
        click.option("--licence-expires-on", metavar="YYYY-MM-DD",
                     help=N_("Date the business licence expires; offers stop from that day on. Leave it out for a "
                             "licence without an end date.")),
        click.option("--town", "towns", multiple=True, required=required,
                     help=N_("Town served, by name or statistical code; repeat for several; * for the whole "
                             "district.")),
        click.option("--service", "services", multiple=True, required=required, type=click.Choice(SERVICES),
                     help=N_("Service offered; repeat for several.")),
        click.option("--price-list-url",
                     help=N_("URL of the published price list (http or https, required for agencies).")),
        click.option("--duty-hours", metavar="HH:MM-HH:MM",
                     help=N_("Daily duty hours, such as 08:00-20:00; write 00:00-24:00 for all day.")),
        click.option("--capacity", type=int,
                     help=N_("Maximum number of offers the agency handles at once (0–100, default 1).")),
        click.option("--contact-phone", required=required, help=N_("Mobile number that receives the offer SMS.")),
        click.option("--other-phone", "other_phones", multiple=True,
                     help=N_("Other contact number, landlines with their area code; repeat for several.")),
        click.option("--by", "username", required=True,
                     help=N_("Username of the admin making the change.")),
    ]

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@agencies_group.command("create", help=N_("Register an agency; it starts as pending vetting."))
@_field_options(required=True)
def create_command(username: str, **options) -> None:
    with _transaction() as (session, _runtime):
        user = _staff(session, username, agencies.CREATE_ROLES)
        agency = _apply(lambda: agencies.create_agency(session, _given(options), f"user:{user.id}", user.id, now()))
        click.echo(gettext("Registered #%(id)s %(name)s (%(status)s).", id=agency.id, name=agency.name,
                           status=label(agencies.STATUSES, agency.status)))


@agencies_group.command("update", help=N_("Edit an agency's registration; only the given options change. An empty "
                                          "string clears an optional field, for example --licence-expires-on \"\"."))
@click.argument("name_or_id")
@_field_options(required=False)
def update_command(name_or_id: str, username: str, **options) -> None:
    fields = _given(options)
    if not fields:
        raise click.UsageError(gettext("Nothing to change: give at least one option."))
    with _transaction() as (session, _runtime):
        user = _staff(session, username, agencies.CREATE_ROLES)
        agency = _agency(session, name_or_id)
        _apply(lambda: agencies.update_agency(session, agency, fields, f"user:{user.id}"))
        click.echo(gettext("Changed #%(id)s %(name)s: %(options)s", id=agency.id, name=agency.name,
                           options=join(_option_names(fields))))


def _option_names(fields: dict) -> list[str]:
    """Name the changed fields by the options that set them, such as --filing-expires-on."""
    params = click.get_current_context().command.params
    return [param.opts[0] for param in params if param.name in fields]


# command -> (status it sets, help text)
STATUS_COMMANDS = {
    "approve": ("approved", N_("Approve the agency after vetting, or end its watch or suspension so that it "
                               "receives offers again.")),
    "watch": ("watch", N_("Put the agency on watch; it keeps receiving offers while on watch.")),
    "suspend": ("suspended", N_("Suspend offers to the agency; its pending offers are withdrawn and dispatched "
                                "again at once.")),
    "revoke": ("revoked", N_("Revoke the agency's admission for good; its pending offers are withdrawn and "
                             "dispatched again at once.")),
}


def _status_command(name: str, to_status: str, summary: str) -> click.Command:
    @click.command(name, help=summary)
    @click.argument("name_or_id")
    @click.option("--reason", required=True, help=N_("Reason, recorded in the status history."))
    @click.option("--by", "username", required=True,
                  help=N_("Username of the supervisor or admin making the change."))
    def command(name_or_id: str, reason: str, username: str) -> None:
        with _transaction() as (session, runtime):
            user = _staff(session, username, agencies.STATUS_ROLES)
            agency = _agency(session, name_or_id)
            outcome = _apply(lambda: withdrawals.change_agency_status(session, runtime, agency, to_status, reason,
                                                                      f"user:{user.id}", user.id, now()))
            change = outcome.change
            lines = [gettext("#%(id)s %(name)s: %(old)s → %(new)s", id=agency.id, name=agency.name,
                             old=label(agencies.STATUSES, change.from_status),
                             new=label(agencies.STATUSES, change.to_status))]
            lines += _offer_lines(outcome)
        for line in lines:
            click.echo(line)

    return command


def _offer_lines(outcome: withdrawals.StatusChangeOutcome) -> list[str]:
    """Word the offers a status change withdrew and the accepted ones it left with the agency."""
    lines = []
    if outcome.withdrawn:
        lines.append(ngettext("Withdrew %(num)d pending offer and told the agency by SMS; the ticket is dispatched "
                              "again at once: %(offers)s",
                              "Withdrew %(num)d pending offers and told the agency by SMS; each ticket is "
                              "dispatched again at once: %(offers)s",
                              len(outcome.withdrawn), offers=_offer_list(outcome.withdrawn)))
    if outcome.still_accepted:
        lines.append(ngettext("%(num)d ticket that the agency accepted is not finished: %(offers)s. To change the "
                              "agency, withdraw the offer on the ticket's page.",
                              "%(num)d tickets that the agency accepted are not finished: %(offers)s. To change the "
                              "agency, withdraw the offer on the ticket's page.",
                              len(outcome.still_accepted), offers=_offer_list(outcome.still_accepted)))
    return lines


def _offer_list(pairs) -> str:
    return join(gettext("%(number)s (offer code %(code)s)", number=ticket.number, code=offer.code)
                for offer, ticket in pairs)


for _name, (_status, _summary) in STATUS_COMMANDS.items():
    agencies_group.add_command(_status_command(_name, _status, _summary))


@agencies_group.command("history", help=N_("List an agency's vetting status history: time, old status, new status, "
                                           "reason and the staff member who made the change."))
@click.argument("name_or_id")
def history_command(name_or_id: str) -> None:
    with _transaction() as (session, runtime):
        agency = _agency(session, name_or_id)
        rows = agencies.history(session, agency.id)
        tz = runtime.settings.timezone
        table = [(isoformat(change.at.replace(microsecond=0), tz),
                  label(agencies.STATUSES, change.from_status) if change.from_status else gettext("(registration)"),
                  label(agencies.STATUSES, change.to_status), change.reason, username or change.actor)
                 for change, username in rows]
    click.echo(f"#{agency.id} {agency.name}")
    headers = (gettext("Time"), gettext("Old status"), gettext("New status"), gettext("Reason"), gettext("Changed by"))
    for line in format_table(headers, table):
        click.echo(line)


FAIRNESS_HEADERS = (N_("ID"), N_("Agency name"), N_("Offers"), N_("Automatic"), N_("Manual"),
                    N_("Automatic share"), N_("Accepted"), N_("Declined"), N_("Timed out"), N_("Withdrawn"),
                    N_("Acceptance rate"), N_("Median acceptance time"), N_("Decline reasons"), N_("SLA breaches"))


@agencies_group.command("fairness", help=N_("Dispatch fairness report: per agency the offers, the share dispatched "
                                            "automatically, the accepted, declined and timed-out offers, and the "
                                            "median acceptance time."))
@click.option("--since", default="30d", show_default=True,
              help=N_("Number of days to count, as whole days of Beijing time including today, written as 30d."))
def fairness_command(since: str) -> None:
    from hotline.reports.fairness import fairness_report, parse_since

    try:
        days = parse_since(since)
    except ValueError:
        message = gettext("%(value)s is invalid; write a number of days from 1 to 366, such as 30d.", value=since)
        raise click.BadParameter(message, param_hint="--since") from None
    with _transaction() as (session, runtime):
        period, rows = fairness_report(session, now(), days, runtime.settings.timezone)
    click.echo(ngettext("Period: %(first)s to %(last)s (Beijing time, %(num)d day)",
                        "Period: %(first)s to %(last)s (Beijing time, %(num)d days)", days,
                        first=period.first_day.isoformat(), last=period.last_day.isoformat()))
    headers = [gettext(header) for header in FAIRNESS_HEADERS]
    for line in format_table(headers, [_fairness_cells(row) for row in rows]):
        click.echo(line)


def _fairness_cells(row) -> tuple[str, ...]:
    figures = row.figures
    # TRANSLATORS: a heading or a label and its number, such as "Priority changes: 2".
    reasons = join(gettext("%(name)s: %(count)s", name=label(DECLINE_REASONS, code), count=count)
                   for code, count in sorted(row.decline_codes.items()))
    median = row.median_accept_minutes
    return (str(figures.agency_id), figures.name, str(figures.offers), str(row.automatic), str(row.manual),
            _percent(row.share_percent), str(figures.accepted), str(figures.states.get("declined", 0)),
            str(figures.states.get("timed_out", 0)), str(figures.states.get("cancelled", 0)),
            _percent(figures.acceptance_rate),
            "—" if median is None else gettext("%(minutes)s min", minutes=median),
            reasons or "—", str(figures.breaches))


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value}%"


@agencies_group.command("remind", help=N_("Send the document expiry reminders now (the scheduler does so daily at "
                                          "09:00) and print how many were written."))
def remind_command() -> None:
    from hotline.agency_reminders import send_expiry_reminders

    click.echo(send_expiry_reminders(_runtime(), now()))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lay out columns padded to the widest cell, counting a CJK character as two columns."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(_width(row[column]) for row in cells) for column in range(len(headers))]
    return ["  ".join(cell + " " * (widths[column] - _width(cell)) for column, cell in enumerate(row)).rstrip()
            for row in cells]


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)


def _list_row(agency: Agency, towns: dict[str, str], today) -> tuple[str, ...]:
    served = gettext("Whole district") if "*" in (agency.towns or []) else \
        join(towns.get(code, code) for code in agency.towns or [])
    return (str(agency.id), agency.name, label(agencies.KINDS, agency.kind), label(agencies.STATUSES, agency.status),
            served, str(agency.capacity), agency.contact_phone,
            agency.filing_expires_on.isoformat() if agency.filing_expires_on else "—",
            agency.licence_expires_on.isoformat() if agency.licence_expires_on else gettext("No end date"),
            gettext("Yes") if agencies.may_receive_offers(agency, today) else gettext("No"))


def _given(options: dict) -> dict:
    """Keep the options that were given, as the fields that agencies.create_agency and update_agency read."""
    fields = {}
    for name, value in options.items():
        if value is None or value == ():
            continue
        fields[name] = list(value) if isinstance(value, tuple) else value
    return fields


def _apply(change: Callable):
    """Run a registry change; turn a rejected input into a message in the CLI language."""
    try:
        return change()
    except InputError as error:
        raise click.ClickException(error_message(error)) from None


def _staff(session: Session, username: str, roles: tuple[str, ...]) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None or not user.active:
        raise click.ClickException(gettext("User %(username)s does not exist or is deactivated.", username=username))
    if user.role not in roles:
        allowed = join(label(ROLE_LABELS, role) for role in roles)
        raise click.ClickException(gettext("User %(username)s has the role %(role)s; only these roles may do this: "
                                           "%(allowed)s.", username=username, role=label(ROLE_LABELS, user.role),
                                           allowed=allowed))
    return user


def _agency(session: Session, name_or_id: str) -> Agency:
    agency = agencies.find_agency(session, name_or_id)
    if agency is None:
        raise click.ClickException(gettext("No agency %(agency)s; `hotline agencies list` shows the IDs and names.",
                                           agency=name_or_id))
    return agency


def _town_names(session: Session) -> dict[str, str]:
    return {town.code: town.name for town in session.exec(select(Town)).all()}


def _runtime():
    from hotline.runtime import current

    try:
        return current()
    except ConfigError as error:
        raise click.ClickException(gettext("Invalid configuration: %(error)s", error=error)) from None


@contextmanager
def _transaction() -> Iterator[tuple[Session, object]]:
    """Open a transaction of the process's runtime. An exception inside rolls everything back."""
    runtime = _runtime()
    with runtime.transaction() as session:
        yield session, runtime
