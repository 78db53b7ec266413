"""The supervisor dashboard: live tiles and SLA watch lists, charts over 7 or 30 days, and agency figures with
the form that changes an agency's status (hotline.web.agency_pages).

The page renders everything once. Its script then polls /supervisor/live every REFRESH_SECONDS and
draws the charts from /supervisor/charts. Supervisors and admins only.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request, url_for
from sqlmodel import select

from hotline import agencies as agency_registry
from hotline.clock import now
from hotline.i18n import current_language
from hotline.models import Town
from hotline.reports.period import PERIOD_DAYS, Period
from hotline.validation import N_, InputError
from hotline.web import agency_pages, figures, queue
from hotline.web.auth import SUPERVISORS, roles_required

bp = Blueprint("web_dashboard", __name__, url_prefix="/supervisor")

# How often the page fetches the live counts again. app.config may override it as DASHBOARD_REFRESH_SECONDS.
REFRESH_SECONDS = 15
DEFAULT_DAYS = PERIOD_DAYS[0]


def runtime():
    return current_app.extensions["hotline"]


@bp.get("")
@roles_required(*SUPERVISORS)
def dashboard():
    """Render the dashboard. An unknown `days` shows the default period, as unknown queue filters are ignored."""
    days = request.args.get("days", type=int)
    days = days if days in PERIOD_DAYS else DEFAULT_DAYS
    language = current_language()
    at = now()
    tz = runtime().settings.timezone
    period = Period.ending(at, days, tz)
    with runtime().transaction() as session:
        live = figures.live_view(session, at, tz, language)
        agencies = figures.agency_rows(session, period, language)
        filter_options = queue._filter_options(session.exec(select(Town).order_by(Town.code)).all(), language)
    return render_template(
        "dashboard.html", live=live, agencies=agencies, period=period, days=days, period_days=PERIOD_DAYS,
        language=language, filter_options=filter_options,
        may_change_status=agency_pages.may_change_status(), reason_limit=agency_registry.MAX_REASON_LENGTH,
        status_actions={status: agency_pages.status_actions(status) for status in agency_registry.STATUSES},
        refresh_seconds=current_app.config.get("DASHBOARD_REFRESH_SECONDS", REFRESH_SECONDS),
        live_url=url_for("web_dashboard.live_counts"), charts_url=url_for("web_dashboard.charts", days=days),
    )


@bp.get("/live")
@roles_required(*SUPERVISORS)
def live_counts():
    """Return the tiles, breakdowns and watch lists as JSON."""
    with runtime().transaction() as session:
        view = figures.live_view(session, now(), runtime().settings.timezone, current_language())
    return jsonify(view)


@bp.get("/charts")
@roles_required(*SUPERVISORS)
def charts():
    """Return the chart series and agency figures of the last `days` local days as JSON."""
    period = requested_period()
    with runtime().transaction() as session:
        view = figures.chart_view(session, period, current_language())
    return jsonify(view)


def requested_period() -> Period:
    """Read `days` (7 or 30, default 7) from the query string; raise InputError (400) for any other value."""
    raw = request.args.get("days")
    if raw is None:
        days = DEFAULT_DAYS
    elif raw.isdigit() and int(raw) in PERIOD_DAYS:
        days = int(raw)
    else:
        raise InputError("invalid_value", N_("Parameter %(field)s must be one of %(accepted)s."), field="days",
                         status=400, accepted=", ".join(str(value) for value in PERIOD_DAYS))
    return Period.ending(now(), days, runtime().settings.timezone)
