"""The dispatch panel of the ticket page: which agencies could take the ticket and why, and dispatch by hand."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from sqlmodel import Session, select

from hotline.agencies import KINDS
from hotline.clock import local, now
from hotline.dispatch import manual, state, targets
from hotline.i18n import current_language
from hotline.models import Offer, Ticket
from hotline.tickets import TransitionError
from hotline.vocabulary import FINAL_STATUSES, label
from hotline.web.display import list_separator

log = logging.getLogger("hotline.web.dispatch")

bp = Blueprint("web_dispatch", __name__, url_prefix="/tickets")

PROBLEMS = {
    "not_approved": ("未准入或已暂停", "not approved or suspended"),
    "documents_expired": ("证照已过期", "documents expired"),
    "other_town": ("不服务本街镇", "does not serve this town"),
    "missing_services": ("不提供所需服务", "lacks a needed service"),
    "off_duty": ("不在值班时间", "off duty"),
    "at_capacity": ("已满额", "at capacity"),
    "tried": ("已派过此单", "already offered this ticket"),
}
ANCHOR = "dispatch-heading"


def runtime():
    return current_app.extensions["hotline"]


def panel_context(session: Session, ticket: Ticket, language: str) -> dict[str, Any]:
    """Build the panel: one row per agency with its standing, the live offer, and whether to show the forms."""
    if ticket.category != "agency_service" or ticket.status in FINAL_STATUSES:
        return {"dispatch_panel": None}

    offers = session.exec(select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt)).all()
    local_now = local(now(), runtime().settings.timezone)
    standings = targets.agency_standings(session, runtime().component("dispatch"), ticket, local_now,
                                         tried={offer.agency_id for offer in offers})
    live = next((offer for offer in offers if offer.state in manual.LIVE_STATES), None)
    newest = offers[-1] if offers else None
    return {"dispatch_panel": {
        "agencies": [_standing_row(standing, language) for standing in standings],
        "live_attempt": live.attempt if live else None,
        "live_code": live.code if live else None,
        "live_accepted": live is not None and live.state == "accepted",
        "tried_any": bool(offers),
        # Each form sends this back, so an action on a page that is out of date is rejected with 409.
        "dispatch_state": state.dispatch_state(newest.attempt, newest.state) if newest else state.NO_OFFER,
    }}


def _standing_row(standing: targets.AgencyStanding, language: str) -> dict[str, Any]:
    agency = standing.agency
    return {
        "id": agency.id,
        "name": agency.name,
        "kind": label(KINDS, agency.kind, language),
        "load": f"{standing.active_jobs}/{agency.capacity}",
        "eligible": standing.eligible,
        "why": list_separator(language).join(label(PROBLEMS, problem, language) for problem in standing.problems),
        # An operator may override capacity and an earlier refusal, never vetting or documents.
        "may_offer": not {"not_approved", "documents_expired"} & set(standing.problems),
    }


@bp.post("/<number>/dispatch/offer")
@login_required
def offer_by_hand(number: str):
    agency_id = request.form.get("agency_id", type=int)
    return _act(number, lambda session, ticket: manual.dispatch_by_hand(
        session, runtime(), ticket, agency_id or 0, current_user.actor, request.form.get("reason"), now(),
        expected_state=_expected_state()), gettext("Offer sent."))


@bp.post("/<number>/dispatch/cancel")
@login_required
def cancel(number: str):
    attempt = request.form.get("attempt", type=int) or 0
    return _act(number, lambda session, ticket: manual.cancel_offer(
        session, runtime(), ticket, attempt, current_user.actor, request.form.get("reason"), now(),
        expected_state=_expected_state()),
        gettext("Offer withdrawn; the agency is told by SMS and the ticket is yours to handle."))


@bp.post("/<number>/dispatch/again")
@login_required
def dispatch_again(number: str):
    include_tried = request.form.get("include_tried") == "yes"
    return _act(number, lambda session, ticket: manual.redispatch(
        session, runtime(), ticket, current_user.actor, request.form.get("reason"), now(),
        include_tried=include_tried, expected_state=_expected_state()),
        gettext("Dispatched again through the dispatch targets."))


def _expected_state() -> str | None:
    """Read the dispatch state the page showed; a form without it (a page served before it existed) is not checked."""
    return request.form.get("expected_dispatch_state") or None


def _act(number: str, action, success: str):
    try:
        with runtime().transaction() as session:
            ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
            if ticket is None:
                flash(gettext("Ticket %(number)s was not found.", number=number), "error")
                return redirect(url_for("web_queue.queue"))
            action(session, ticket)
    except state.DispatchChanged as error:
        log.info("Web dispatch: %s acted on an out-of-date page of %s (expected %s)", current_user.username,
                 number, error.facts["expected"])
        # Imported here because the ticket pages import this module for the panel.
        from hotline.web.ticket_pages import render_with_dispatch_error

        return render_with_dispatch_error(number, gettext(error.template, **error.params_in(current_language())))
    except TransitionError as error:
        flash(gettext(error.template, **error.params), "error")
    else:
        log.info("Web dispatch: %s changed the dispatch of %s", current_user.username, number)
        flash(success, "success")
    return redirect(url_for("web_tickets.ticket_page", number=number, _anchor=ANCHOR))
