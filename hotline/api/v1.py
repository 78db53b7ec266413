"""JSON API v1: referrals in; tickets and SLA out; claims and status changes. Agencies are in api.agencies."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request, url_for
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from werkzeug.exceptions import HTTPException

from hotline import intake, optimistic_intake, tickets, tokens
from hotline.api import schemas
from hotline.api.auth import STAFF_ROLES, RememberedCaller, remembered_caller, request_connection, require
from hotline.api.bodies import json_object
from hotline.api.errors import ApiError
from hotline.api.idempotency import run_idempotent
from hotline.api.params import int_arg
from hotline.api.platform import referral_location
from hotline.api.views import ticket_detail, ticket_summary, town_names
from hotline.clock import now
from hotline.i18n import current_language
from hotline.models import Call, Ticket, Town
from hotline.sla import watchlist
from hotline.validation import N_, InputError, required, unknown_value, wrong_type
from hotline.vocabulary import (
    CATEGORIES,
    FINAL_STATUSES,
    PRIORITIES,
    SOURCES,
    STATUSES,
    TRANSITIONS,
    label,
)

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
log = logging.getLogger("hotline.api")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# Statuses an operator may ask for; dispatch sets dispatching and dispatched itself.
OPERATOR_STATUSES = sorted({status for targets in TRANSITIONS.values() for status in targets})


def runtime():
    return current_app.extensions["hotline"]


@bp.post("/referrals")
def create_referral():
    caller = remembered_caller(tokens.REFERRALS_WRITE)
    if caller is not None:
        response = _create_referral_optimistically(caller)
        if response is not None:
            return response
    return _create_referral()


@require(source=True)
def _create_referral():
    body = json_object()
    caller = g.caller

    def work(session: Session):
        result = intake.take_referral(session, runtime(), caller.source, body, caller.token_id, now())
        return result, ticket_detail(session, result.ticket, caller.may_see_phones, current_language(),
                                     new_ticket=result.new_ticket)

    # On PostgreSQL a referral writes one statement: its new ticket with every row (hotline.ticket_insert),
    # or one event for a changed resend. A process's first ticket may also store its rule-set version row,
    # which is valid without the ticket. It runs on the connection the token lookup checked.
    result, view = run_idempotent(runtime(), work, one_write=True, connection=request_connection())
    return _referral_response(result, view)


def _create_referral_optimistically(caller: RememberedCaller):
    """File the referral in one statement (hotline.optimistic_intake); None sends it down the ordinary path.

    Bad input also returns None: the ordinary path authenticates before it reports the body's error.
    """
    connection = request_connection()
    if connection is None:
        return None

    def attempt(driver):
        try:
            schemas.check_request_body(request.endpoint)
            with runtime().transaction(one_write=True, connection=connection) as session:
                result = optimistic_intake.take_referral(session, driver, runtime(), caller.identity,
                                                         caller.token_hash, json_object(), now())
                if result is None:
                    return None
                return result, ticket_detail(session, result.ticket, False, current_language(),
                                             new_ticket=result.new_ticket)
        except (InputError, ApiError, HTTPException, IntegrityError) as error:
            # The ordinary path reports the input error, or returns the ticket of a concurrent duplicate.
            log.debug("API: referral from %s left to the ordinary path after %s", caller.identity.source,
                      type(error).__name__)
            return None

    # A lost connection is replaced and the attempt made once more. A repeat finds the first attempt's
    # referral, if the server wrote it, and the ordinary path then returns that ticket.
    created = connection.first_statement(attempt)
    if created is None:
        return None
    g.caller = caller.as_caller()
    return _referral_response(*created)


def _referral_response(result: intake.IntakeResult, view: dict):
    response = jsonify(view)
    response.status_code = 201 if result.created else 200
    # The referral's own address, which the source reads with referrals:read; the ticket's is staff-only.
    # A merged ticket may carry another referral's id, so the referral's id is taken from the intake.
    response.headers["Location"] = referral_location(result.external_id)
    return response


@bp.get("/tickets")
@require(roles=STAFF_ROLES)
def list_tickets():
    limit = int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_arg("offset", 0, 0, 10_000_000)
    with runtime().transaction() as session:
        query = _filtered(select(Ticket), session).order_by(*tickets.queue_order()).offset(offset).limit(limit + 1)
        rows = session.exec(query).all()
        towns = town_names(session)
    items = [ticket_summary(ticket, towns, g.caller.may_see_phones, current_language()) for ticket in rows[:limit]]
    return jsonify({"items": items, "next": _next_url("api_v1.list_tickets", offset + limit, len(rows) > limit)})


def _filtered(query, session: Session):
    filters = {
        "status": (Ticket.status, STATUSES),
        "source": (Ticket.source, SOURCES),
        "category": (Ticket.category, CATEGORIES),
    }
    for name, (column, accepted) in filters.items():
        value = request.args.get(name)
        if value == "open" and name == "status":
            query = query.where(tickets.is_open())
        elif value:
            if value not in accepted:
                raise unknown_value(name, value, list(accepted) + (["open"] if name == "status" else []))
            query = query.where(column == value)

    priority = request.args.get("priority")
    if priority:
        if priority not in PRIORITIES:
            raise unknown_value("priority", priority, PRIORITIES)
        query = query.where(Ticket.priority == int(priority[1]))
    town = request.args.get("town")
    if town:
        code = session.exec(select(Town.code).where((Town.name == town) | (Town.code == town))).first()
        if code is None:
            raise unknown_value("town", town, list(town_names(session).values()))
        query = query.where(Ticket.town_code == code)
    if request.args.get("external_id"):
        query = query.where(Ticket.external_id == request.args["external_id"])
    if request.args.get("call_sid"):
        query = query.where(Ticket.id.in_(select(Call.ticket_id).where(Call.call_sid == request.args["call_sid"])))
    return query


@bp.get("/tickets/<number>")
@require(roles=STAFF_ROLES)
def get_ticket(number: str):
    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        return jsonify(ticket_detail(session, ticket, g.caller.may_see_phones, current_language()))


@bp.post("/tickets/<number>/claim")
@require(roles=STAFF_ROLES)
def claim_ticket(number: str):
    if g.caller.user_id is None:
        raise ApiError(422, "no_user", N_("This token belongs to no staff member, so it cannot claim tickets."))
    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        if ticket.status in FINAL_STATUSES:
            raise ApiError(409, "ticket_closed", N_("Ticket %(number)s is %(state)s and cannot be claimed."),
                           number=number, state=label(STATUSES, ticket.status, current_language()))
        if not tickets.claim(session, runtime(), ticket, g.caller.user_id, g.caller.actor, now()):
            raise ApiError(409, "already_claimed", N_("Ticket %(number)s is already claimed by user %(user)s."),
                           number=number, user=ticket.assigned_to_id)
        return jsonify(ticket_detail(session, ticket, g.caller.may_see_phones, current_language()))


@bp.post("/tickets/<number>/transitions")
@require(roles=STAFF_ROLES)
def transition_ticket(number: str):
    body = json_object()
    to_status = body.get("to")
    if to_status is None:
        raise required("to")
    if not isinstance(to_status, str) or to_status not in OPERATOR_STATUSES:
        raise unknown_value("to", to_status, OPERATOR_STATUSES)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise wrong_type("reason", "string")

    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        # A status change may withdraw offers, so it queues behind dispatch actions on the ticket.
        tickets.lock_ticket(session, ticket)
        try:
            tickets.transition(session, runtime(), ticket, to_status, g.caller.actor, reason, now())
        except tickets.TransitionError as error:
            status = 409 if error.code == "invalid_transition" else 422
            # Status codes in the message are worded in the caller's language, as on the ticket page.
            params = {key: label(STATUSES, value, current_language()) if key.endswith("status") else value
                      for key, value in error.params.items()}
            raise ApiError(status, error.code, error.template, field=error.field, **params) from None
        return jsonify(ticket_detail(session, ticket, g.caller.may_see_phones, current_language()))


@bp.get("/sla/overdue")
@require(roles=STAFF_ROLES)
def overdue():
    """List open tickets with a breached running clock, the longest overdue first."""
    return _clock_page("api_v1.overdue", watchlist.OVERDUE)


@bp.get("/sla/at-risk")
@require(roles=STAFF_ROLES)
def at_risk():
    """List open tickets with a warned running clock not yet breached, the soonest due first."""
    return _clock_page("api_v1.at_risk", watchlist.AT_RISK)


def _clock_page(endpoint: str, watch: watchlist.WatchList):
    """Page through the open tickets on one SLA watch list."""
    limit = int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_arg("offset", 0, 0, 10_000_000)
    with runtime().transaction() as session:
        rows = session.exec(watchlist.tickets_query(watch).offset(offset).limit(limit + 1)).all()
        towns = town_names(session)
        items = [ticket_summary(ticket, towns, g.caller.may_see_phones, current_language()) for ticket in rows[:limit]]
    return jsonify({"items": items, "next": _next_url(endpoint, offset + limit, len(rows) > limit)})


def _ticket_or_404(session: Session, number: str) -> Ticket:
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None:
        raise ApiError(404, "not_found", N_("Ticket %(number)s was not found."), field="number", number=number)
    return ticket


def _next_url(endpoint: str, offset: int, more: bool) -> str | None:
    """URL of the next page, or None on the last one."""
    if not more:
        return None
    args = request.args.to_dict()
    args["offset"] = str(offset)
    return url_for(endpoint, _external=True, **args)
