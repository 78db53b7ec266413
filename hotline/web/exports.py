"""CSV and XLSX downloads for supervisors: the ticket list with the queue's filters, and the chart data.

Headers follow the page language (Chinese unless the reader chose English), times are shown in the
hotline's zone, and callers' numbers are masked as on the queue page.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, request, send_file
from flask_babel import gettext
from flask_login import current_user
from sqlmodel import Session, select

from hotline import tickets
from hotline.api.views import town_names
from hotline.clock import local, now
from hotline.i18n import current_language
from hotline.models import Agency, SlaClock, Ticket, User
from hotline.phones import mask
from hotline.spreadsheets import Table, to_csv, to_xlsx
from hotline.vocabulary import CATEGORIES, CHANNELS, SOURCES, STATUSES, label
from hotline.web import display, figures
from hotline.web.auth import SUPERVISORS, roles_required
from hotline.web.dashboard import requested_period
from hotline.web.queue import QueueFilters

log = logging.getLogger("hotline.web.exports")

bp = Blueprint("web_exports", __name__, url_prefix="/supervisor/export")

FORMATS = {
    "csv": ("text/csv", to_csv),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", to_xlsx),
}


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/tickets.<fmt>")
@roles_required(*SUPERVISORS)
def export_tickets(fmt: str):
    """Download the open tickets that the queue shows for the same filters, in queue order, without its row limit."""
    _check_format(fmt)
    at = now()
    with runtime().transaction() as session:
        table = _ticket_table(session, at, current_language())
    stamp = local(at, runtime().settings.timezone).strftime("%Y%m%d-%H%M")
    log.info("Web exports: %s exported %s tickets as %s", current_user.username, len(table.rows), fmt)
    return _download([table], fmt, f"tickets-{stamp}")


@bp.get("/charts.<fmt>")
@roles_required(*SUPERVISORS)
def export_charts(fmt: str):
    """Download every chart's data and the agency table for the last 7 or 30 days, one table per chart."""
    _check_format(fmt)
    period = requested_period()
    language = current_language()
    with runtime().transaction() as session:
        view = figures.chart_view(session, period, language)
    log.info("Web exports: %s exported chart data for %s days as %s", current_user.username, period.days, fmt)
    name = f"dashboard-{period.first_day:%Y%m%d}-{period.last_day:%Y%m%d}"
    return _download(chart_tables(view), fmt, name)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        abort(404)


def _download(tables: list[Table], fmt: str, name: str):
    mimetype, writer = FORMATS[fmt]
    return send_file(io.BytesIO(writer(tables)), mimetype=mimetype, as_attachment=True,
                     download_name=f"{name}.{fmt}", max_age=0)


def _ticket_table(session: Session, at: datetime, language: str) -> Table:
    towns = town_names(session)
    filters = QueueFilters.from_args(request.args, towns)
    rows = session.exec(filters.apply(select(Ticket)).order_by(*tickets.queue_order())).all()
    users = {user.id: user.display_name for user in session.exec(select(User)).all()}
    agencies = {agency.id: agency.name for agency in session.exec(select(Agency)).all()}
    states = _sla_states(session, rows, at)
    tz = runtime().settings.timezone

    headers = [gettext("Number"), gettext("Created"), gettext("Priority"), gettext("Category"), gettext("Source"),
               gettext("Channel"), gettext("Status"), gettext("Town"), gettext("Committee"), gettext("Caller"),
               gettext("Assignee"), gettext("Agency"), gettext("SLA"), gettext("Due")]
    body = [[
        ticket.number, _local(ticket.created_at, tz), f"P{ticket.priority}",
        label(CATEGORIES, ticket.category, language), label(SOURCES, ticket.source, language),
        label(CHANNELS, ticket.channel, language), label(STATUSES, ticket.status, language),
        towns.get(ticket.town_code, "") if ticket.town_code else "", ticket.committee or "",
        mask(ticket.caller_phone) or "", users.get(ticket.assigned_to_id, "") if ticket.assigned_to_id else "",
        agencies.get(ticket.agency_id, "") if ticket.agency_id else "", _sla_text(states[ticket.id]),
        _local(ticket.due_at, tz),
    ] for ticket in rows]
    return Table(title=gettext("Ticket list"), headers=headers, rows=body)


def _sla_states(session: Session, rows: list[Ticket], at: datetime) -> dict[int, str]:
    """Judge each ticket's SLA colour as the queue does: by its earliest due clock and any breach."""
    running: dict[int, list[SlaClock]] = {}
    ids = [ticket.id for ticket in rows]
    if ids:
        for clock in session.exec(select(SlaClock).where(SlaClock.ticket_id.in_(ids))
                                  .where(SlaClock.state == "running")).all():
            running.setdefault(clock.ticket_id, []).append(clock)
    states = {}
    for ticket in rows:
        clocks = running.get(ticket.id, [])
        due_clock = next((clock for clock in clocks if clock.due_at == ticket.due_at), None)
        breached = any(clock.breached_at is not None for clock in clocks)
        states[ticket.id] = display.sla_state(ticket.due_at, getattr(due_clock, "warn_at", None), breached, at)
    return states


def _sla_text(state: str) -> str:
    texts = {"ok": gettext("Within time"), "warning": gettext("Due soon"), "breached": gettext("Overdue")}
    return texts.get(state, "")


def _local(value: datetime | None, tz) -> datetime | None:
    """Return the wall-clock time in the hotline's zone as a naive datetime, as spreadsheets expect."""
    return local(value, tz).replace(tzinfo=None) if value is not None else None


def chart_tables(view: dict[str, Any]) -> list[Table]:
    """Turn figures.chart_view output into tables: one per chart, and the agency table."""
    return [
        _sources_table(view),
        _on_time_table(view),
        _targets_table(view),
        _first_response_table(view),
        Table(gettext("Agencies"), _agency_headers(), [_agency_cells(row) for row in view["agencies"]]),
        Table(gettext("Tickets by town"), [gettext("Town"), gettext("Tickets")],
              [[town["name"], town["count"]] for town in view["towns"]]),
    ]


def _rate_header() -> str:
    return gettext("On-time rate (%(unit)s)", unit="%")


def _sources_table(view: dict[str, Any]) -> Table:
    sources = view["tickets_by_source"]
    headers = [gettext("Date")] + [source["label"] for source in sources] + [gettext("Total")]
    rows = []
    for index, day in enumerate(view["days"]):
        counts = [source["counts"][index] for source in sources]
        rows.append([day, *counts, sum(counts)])
    return Table(gettext("Tickets per day by source"), headers, rows)


def _on_time_table(view: dict[str, Any]) -> Table:
    on_time = view["on_time"]
    headers = [gettext("Date"), gettext("Decided"), gettext("On time"), _rate_header()]
    headers += [gettext("%(target)s on-time rate (%(unit)s)", target=target["label"], unit="%")
                for target in on_time["by_target"]]
    rows = []
    for index, day in enumerate(view["days"]):
        row = [day, on_time["decided"][index], on_time["on_time"][index], on_time["all"][index]]
        rows.append(row + [target["rates"][index] for target in on_time["by_target"]])
    return Table(gettext("On-time rate per day"), headers, rows)


def _targets_table(view: dict[str, Any]) -> Table:
    headers = [gettext("SLA target"), gettext("Decided"), gettext("On time"), _rate_header()]
    rows = [[target["label"], target["total"], target["on_time"], target["rate"]]
            for target in view["on_time"]["targets"]]
    return Table(gettext("On-time rate per SLA target"), headers, rows)


def _first_response_table(view: dict[str, Any]) -> Table:
    first_response = view["first_response"]
    headers = [gettext("Date"), gettext("Answered tickets"), gettext("Median first response (minutes)")]
    rows = [[day, first_response["answered"][index], first_response["median_minutes"][index]]
            for index, day in enumerate(view["days"])]
    return Table(gettext("Median first response"), headers, rows)


def _agency_headers() -> list[str]:
    return [gettext("Agency"), gettext("Kind"), gettext("Status"), gettext("Offers"), gettext("Accepted"),
            gettext("Declined"), gettext("Timed out"), gettext("Acceptance rate (%(unit)s)", unit="%"),
            gettext("Median acceptance time (minutes)"), gettext("SLA breaches")]


def _agency_cells(row: dict[str, Any]) -> list[Any]:
    return [row["name"], row["kind_label"], row["status_label"], row["offers"], row["accepted"], row["declined"],
            row["timed_out"], row["acceptance_rate"], row["median_accept_minutes"], row["breaches"]]
