"""Dispatch by hand through the JSON API: offer to a chosen agency, cancel an offer, dispatch again.

Each body may carry `expected_dispatch_state`, the ticket's `dispatch_state` as the caller read it. When
the ticket's newest offer has changed since, the response is 409 `dispatch_changed` and nothing changes.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify
from sqlmodel import Session, select

from hotline.api.auth import STAFF_ROLES, require
from hotline.api.bodies import json_object
from hotline.api.errors import ApiError
from hotline.api.views import ticket_detail
from hotline.clock import now
from hotline.dispatch import manual, state
from hotline.i18n import current_language
from hotline.models import Ticket
from hotline.row_ids import MAX_ROW_ID, is_row_id
from hotline.tickets import TransitionError
from hotline.validation import N_, required, wrong_type

bp = Blueprint("api_dispatch", __name__, url_prefix="/api/v1/tickets")

# Errors the caller can fix by changing the request, rather than by changing the ticket first.
UNPROCESSABLE_CODES = ("reason_required", "agency_not_eligible")
EXPECTED_STATE = "expected_dispatch_state"


def runtime():
    return current_app.extensions["hotline"]


@bp.post("/<number>/offers")
@require(roles=STAFF_ROLES)
def create_offer(number: str):
    """Offer the ticket to the agency in the body: {"agency_id": 3, "reason": "..."}."""
    body = json_object()
    agency_id = body.get("agency_id")
    if agency_id is None:
        raise required("agency_id")
    if not isinstance(agency_id, int) or isinstance(agency_id, bool):
        raise ApiError(422, "invalid_type", N_("Field %(field)s must be an integer."), field="agency_id")
    if not is_row_id(agency_id):
        raise ApiError(422, "invalid_value", N_("Field %(field)s must be an integer from %(minimum)s to %(maximum)s."),
                       field="agency_id", minimum=0, maximum=MAX_ROW_ID)
    reason = _reason(body)
    expected = _expected_state(body)

    def work(session: Session, ticket: Ticket) -> None:
        manual.dispatch_by_hand(session, runtime(), ticket, agency_id, g.caller.actor, reason, now(),
                                expected_state=expected)

    return _run(number, work, status=201)


@bp.post("/<number>/offers/<int:attempt>/cancel")
@require(roles=STAFF_ROLES)
def cancel_offer(number: str, attempt: int):
    """Cancel a pending or accepted offer: {"reason": "..."}. The ticket goes to in_progress."""
    body = json_object()
    reason = _reason(body)
    expected = _expected_state(body)

    def work(session: Session, ticket: Ticket) -> None:
        manual.cancel_offer(session, runtime(), ticket, attempt, g.caller.actor, reason, now(),
                            expected_state=expected)

    return _run(number, work)


@bp.post("/<number>/redispatch")
@require(roles=STAFF_ROLES)
def redispatch(number: str):
    """Dispatch again through the targets: {"reason": "...", "include_tried": false}."""
    body = json_object()
    reason = _reason(body)
    include_tried = body.get("include_tried", False)
    if not isinstance(include_tried, bool):
        raise ApiError(422, "invalid_type", N_("Field %(field)s must be true or false."), field="include_tried")
    expected = _expected_state(body)

    def work(session: Session, ticket: Ticket) -> None:
        manual.redispatch(session, runtime(), ticket, g.caller.actor, reason, now(), include_tried=include_tried,
                          expected_state=expected)

    return _run(number, work)


def _run(number: str, work, status: int = 200):
    with runtime().transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is None:
            raise ApiError(404, "not_found", N_("Ticket %(number)s was not found."), field="number", number=number)
        try:
            work(session, ticket)
        except state.DispatchChanged as error:
            raise ApiError(409, error.code, error.template, field=error.field,
                           **error.params_in(current_language())) from None
        except TransitionError as error:
            raise ApiError(_status_of(error), error.code, error.template, field=error.field, **error.params) \
                from None
        view = ticket_detail(session, ticket, g.caller.may_see_phones, current_language())
    response = jsonify(view)
    response.status_code = status
    return response


def _status_of(error: TransitionError) -> int:
    if error.code == "not_found":
        return 404
    return 422 if error.code in UNPROCESSABLE_CODES else 409


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise wrong_type("reason", "string")
    return reason


def _expected_state(body: dict[str, Any]) -> str | None:
    """Read the optional expected dispatch state; null counts as absent, so the action is not conditional."""
    expected = body.get(EXPECTED_STATE)
    if expected is None:
        return None
    if not isinstance(expected, str):
        raise wrong_type(EXPECTED_STATE, "string")
    if not state.is_dispatch_state(expected):
        raise ApiError(422, "invalid_value", N_("Field %(field)s must be none or the attempt and state of the "
                                                "ticket's newest offer, such as 2:pending; got %(value)s."),
                       field=EXPECTED_STATE, value=expected[:40])
    return expected
