"""The supervisor's figures worded for the reader: live tiles, SLA watch lists, chart series and agencies.

hotline.reports computes the numbers with codes. This module adds labels in the request's language and
times in the hotline's zone, and returns plain dicts that the page, the JSON endpoints and the exports
share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from flask_babel import gettext
from sqlmodel import Session, select

from hotline.api.views import town_names
from hotline.clock import as_aware_utc
from hotline.models import Agency, User
from hotline.reports import agencies as agency_reports
from hotline.reports import daily, live
from hotline.reports.period import Period
from hotline.sla import watchlist
from hotline.vocabulary import CATEGORIES, CLOCK_OWNERS, PRIORITIES, SLA_TARGETS, SOURCES, label
from hotline.web import display

AGENCY_KINDS = {
    "funeral_home": ("区殡仪馆自有队伍", "Funeral home team"),
    "agency": ("殡葬代理机构", "Funeral agency"),
}
AGENCY_STATUSES = {
    "pending": ("待审核", "Pending vetting"),
    "approved": ("已准入", "Approved"),
    "watch": ("观察期", "On watch"),
    "suspended": ("已暂停", "Suspended"),
    "revoked": ("已撤销资格", "Revoked"),
}


def live_view(session: Session, at: datetime, tz, language: str) -> dict[str, Any]:
    """Build the tiles, the breakdowns by priority and source, and both watch lists."""
    counts = live.live_counts(session)
    users = {user.id: user.display_name for user in session.exec(select(User)).all()}
    agencies = {agency.id: agency.name for agency in session.exec(select(Agency)).all()}
    towns = town_names(session)

    def rows(watch: watchlist.WatchList) -> list[dict[str, Any]]:
        return [_watch_row(entry, at, tz, language, users, agencies, towns)
                for entry in live.watch_entries(session, watch, at)]

    return {
        "updated_at": display.show_time(at, tz),
        "tiles": {
            "open": counts.open, "unassigned": counts.unassigned, "at_risk": counts.at_risk,
            "breached": counts.breached, "waiting_on_agencies": counts.waiting_on_agencies,
            "awaiting_acceptance": counts.awaiting_acceptance, "accepted_by_agency": counts.accepted_by_agency,
        },
        "by_priority": [{"code": code, "label": code, "count": counts.by_priority.get(int(code[1]), 0)}
                        for code in PRIORITIES],
        "by_source": [{"code": code, "label": label(SOURCES, code, language), "count": counts.by_source.get(code, 0)}
                      for code in SOURCES],
        "breached": rows(watchlist.OVERDUE),
        "at_risk": rows(watchlist.AT_RISK),
        "list_limit": live.WATCH_ROWS,
    }


def _watch_row(entry: live.WatchEntry, at: datetime, tz, language: str, users, agencies, towns) -> dict[str, Any]:
    ticket, clock = entry.ticket, entry.clock
    owner = label(CLOCK_OWNERS, clock.owner, language)
    agency = agencies.get(entry.agency_id, "") if entry.agency_id is not None else ""
    return {
        "number": ticket.number,
        "url": url_for("web_tickets.ticket_page", number=ticket.number),
        "priority": f"P{ticket.priority}",
        "category": label(CATEGORIES, ticket.category, language),
        "town": towns.get(ticket.town_code, "") if ticket.town_code else "",
        "target": label(SLA_TARGETS, clock.target, language),
        "owner": clock.owner,
        "owner_label": f"{owner} · {agency}" if agency else owner,
        "due": display.show_time(clock.due_at, tz),
        "late_seconds": int((at - as_aware_utc(clock.due_at)).total_seconds()),
        "lateness": display.countdown_text(clock.due_at, at, language),
        "assignee": users.get(ticket.assigned_to_id, "") if ticket.assigned_to_id else "",
    }


def chart_view(session: Session, period: Period, language: str) -> dict[str, Any]:
    """Build every chart series of `period` and the agency table, labelled in `language`."""
    on_time = daily.on_time(session, period)
    minutes = daily.first_response_minutes(session, period)
    towns = town_names(session)
    return {
        "period": {"days": period.days, "first_day": period.first_day.isoformat(),
                   "last_day": period.last_day.isoformat(), "timezone": period.tz.key},
        "days": [day.isoformat() for day in period.day_list()],
        "tickets_by_source": [{"code": code, "label": label(SOURCES, code, language), "counts": counts}
                              for code, counts in daily.tickets_by_source(session, period).items()],
        "on_time": _on_time_view(on_time, language),
        "first_response": {"median_minutes": [daily.median_minutes(values) for values in minutes],
                           "answered": [len(values) for values in minutes]},
        "towns": [{"code": code, "name": towns.get(code, code) if code else gettext("No town given"),
                   "count": count} for code, count in daily.tickets_by_town(session, period)],
        "agencies": agency_rows(session, period, language),
    }


def agency_rows(session: Session, period: Period, language: str) -> list[dict[str, Any]]:
    """Build one row per agency for offers sent and agency clocks breached in `period`."""
    return [_agency_row(figures, language) for figures in agency_reports.agency_figures(session, period)]


def _on_time_view(series: daily.OnTimeSeries, language: str) -> dict[str, Any]:
    targets = [code for code in SLA_TARGETS if code in series.target_totals]
    return {
        "all": [day.rate for day in series.all_days],
        "decided": [day.total for day in series.all_days],
        "on_time": [day.on_time for day in series.all_days],
        "by_target": [{"code": code, "label": label(SLA_TARGETS, code, language),
                       "rates": [day.rate for day in series.by_target[code]]} for code in targets],
        "targets": [{"code": code, "label": label(SLA_TARGETS, code, language),
                     "on_time": series.target_totals[code].on_time, "total": series.target_totals[code].total,
                     "rate": series.target_totals[code].rate} for code in targets],
        "total": {"on_time": series.total.on_time, "total": series.total.total, "rate": series.total.rate},
    }


def _agency_row(figures: agency_reports.AgencyFigures, language: str) -> dict[str, Any]:
    median = daily.median_minutes(figures.accept_minutes)
    return {
        "agency_id": figures.agency_id,
        "name": figures.name,
        "kind": figures.kind,
        "kind_label": label(AGENCY_KINDS, figures.kind, language),
        "status": figures.status,
        "status_label": label(AGENCY_STATUSES, figures.status, language),
        "offers": figures.offers,
        "accepted": figures.accepted,
        "declined": figures.states.get("declined", 0),
        "timed_out": figures.states.get("timed_out", 0),
        "acceptance_rate": figures.acceptance_rate,
        "median_accept_minutes": median,
        "median_accept_text": display.duration_text(median * 60, language) if median is not None else "",
        "breaches": figures.breaches,
    }
