"""JSON API of the agency registry: every staff role reads, admins register and edit, supervisors and
admins change the vetting status. A status that takes the agency out of dispatch withdraws its pending
offers (hotline.dispatch.withdrawals)."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, url_for
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from hotline import agencies
from hotline.api.auth import STAFF_ROLES, require
from hotline.api.bodies import json_object
from hotline.api.errors import ApiError
from hotline.clock import isoformat, local, now
from hotline.dispatch import withdrawals
from hotline.i18n import current_language
from hotline.models import Agency, AgencyStatusChange, Offer, Ticket, Town
from hotline.reports.fairness import FairnessRow, fairness_report, parse_since
from hotline.validation import N_, InputError
from hotline.vocabulary import DECLINE_REASONS, label

bp = Blueprint("api_agencies", __name__, url_prefix="/api/v1")

STATUS_BODY_FIELDS = ("status", "reason")
DUPLICATE_MESSAGE = N_("An agency with this name or credit code is already registered.")


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/agencies")
@require(roles=STAFF_ROLES)
def list_agencies():
    with runtime().transaction() as session:
        rows = session.exec(select(Agency).order_by(Agency.kind, Agency.id)).all()
        towns = _town_names(session)
        items = [agency_json(agency, towns, _today(), current_language()) for agency in rows]
    return jsonify({"items": items, "next": None})


@bp.get("/agencies/fairness")
@require(roles=STAFF_ROLES)
def fairness():
    """Share of offers, outcomes and acceptance times per agency over ?since=30d (whole local days)."""
    since = request.args.get("since", "30d")
    try:
        days = parse_since(since)
    except ValueError:
        raise InputError("invalid_value", N_("Parameter %(field)s must be a number of days from 1 to 366, such "
                                             "as 30d."), field="since") from None

    language = current_language()
    with runtime().transaction() as session:
        period, rows = fairness_report(session, now(), days, runtime().settings.timezone)
    return jsonify({
        "first_day": period.first_day.isoformat(),
        "last_day": period.last_day.isoformat(),
        "start": isoformat(period.start),
        "end": isoformat(period.end),
        "items": [_fairness_json(row, language) for row in rows],
    })


def _fairness_json(row: FairnessRow, language: str) -> dict[str, Any]:
    figures = row.figures
    return {
        "agency_id": figures.agency_id,
        "name": figures.name,
        "kind": figures.kind,
        "status": figures.status,
        "offers": figures.offers,
        "automatic_offers": row.automatic,
        "manual_offers": row.manual,
        "share_of_automatic_percent": row.share_percent,
        "accepted": figures.accepted,
        "declined": figures.states.get("declined", 0),
        "timed_out": figures.states.get("timed_out", 0),
        "cancelled": figures.states.get("cancelled", 0),
        "pending": figures.states.get("pending", 0),
        "acceptance_rate_percent": figures.acceptance_rate,
        "median_accept_minutes": row.median_accept_minutes,
        "decline_reasons": [{"code": code, "label": label(DECLINE_REASONS, code, language), "count": count}
                            for code, count in sorted(row.decline_codes.items())],
        "sla_breaches": figures.breaches,
    }


@bp.get("/agencies/<int:agency_id>")
@require(roles=STAFF_ROLES)
def get_agency(agency_id: int):
    with runtime().transaction() as session:
        return jsonify(_detail(session, _agency_or_404(session, agency_id)))


@bp.post("/agencies")
@require(roles=agencies.CREATE_ROLES)
def create_agency():
    body = json_object()
    try:
        with runtime().transaction() as session:
            agency = agencies.create_agency(session, body, g.caller.actor, g.caller.user_id, now())
            view = _detail(session, agency)
    except IntegrityError:
        # Another request registered the same name or credit code between the check and the commit.
        raise ApiError(409, "already_exists", DUPLICATE_MESSAGE, field="name") from None

    response = jsonify(view)
    response.status_code = 201
    response.headers["Location"] = url_for("api_agencies.get_agency", agency_id=view["id"])
    return response


@bp.patch("/agencies/<int:agency_id>")
@require(roles=agencies.CREATE_ROLES)
def update_agency(agency_id: int):
    body = json_object()
    if "status" in body:
        raise InputError("unknown_field", N_("Change the status with POST /api/v1/agencies/<id>/status."),
                         field="status")
    try:
        with runtime().transaction() as session:
            agency = agencies.update_agency(session, _agency_or_404(session, agency_id), body, g.caller.actor)
            view = _detail(session, agency)
    except IntegrityError:
        raise ApiError(409, "already_exists", DUPLICATE_MESSAGE, field="name") from None
    return jsonify(view)


@bp.post("/agencies/<int:agency_id>/status")
@require(roles=agencies.STATUS_ROLES)
def change_status(agency_id: int):
    body = json_object()
    for key in body:
        if key not in STATUS_BODY_FIELDS:
            raise InputError("unknown_field", N_("Unknown field %(field)s; accepted fields: %(accepted)s."),
                             field=str(key), accepted=", ".join(STATUS_BODY_FIELDS))

    with runtime().transaction() as session:
        agency = _agency_or_404(session, agency_id)
        outcome = withdrawals.change_agency_status(session, runtime(), agency, body.get("status"), body.get("reason"),
                                                   g.caller.actor, g.caller.user_id, now())
        view = _detail(session, agency)
        view["withdrawn_offers"] = [_offer_ref(offer, ticket) for offer, ticket in outcome.withdrawn]
        view["accepted_offers"] = [_offer_ref(offer, ticket) for offer, ticket in outcome.still_accepted]
        return jsonify(view)


def _offer_ref(offer: Offer, ticket: Ticket) -> dict[str, Any]:
    return {"ticket": ticket.number, "attempt": offer.attempt, "code": offer.code}


def agency_json(agency: Agency, towns: dict[str, str], today: date, language: str) -> dict[str, Any]:
    """Build an agency as the list shows it. Instants carry their offset, and dates are YYYY-MM-DD."""
    return {
        "id": agency.id,
        "name": agency.name,
        "kind": agency.kind,
        "kind_label": label(agencies.KINDS, agency.kind, language),
        "status": agency.status,
        "status_label": label(agencies.STATUSES, agency.status, language),
        "towns": agency.towns or [],
        "town_names": [towns.get(code, code) for code in agency.towns or []],
        "services": agency.services or [],
        "capacity": agency.capacity,
        "contact_phone": agency.contact_phone,
        "other_phones": agency.other_phones or [],
        "credit_code": agency.credit_code,
        "filing_number": agency.filing_number,
        "filing_expires_on": _date(agency.filing_expires_on),
        "licence_expires_on": _date(agency.licence_expires_on),
        "expired_documents": agencies.expired_documents(agency, today),
        "may_receive_offers": agencies.may_receive_offers(agency, today),
        "price_list_url": agency.price_list_url,
        "duty_hours": agency.duty_hours,
        "last_offered_at": isoformat(agency.last_offered_at),
        "created_at": isoformat(agency.created_at),
    }


def status_change_json(change: AgencyStatusChange, username: str | None, language: str) -> dict[str, Any]:
    return {
        "at": isoformat(change.at),
        "from": change.from_status,
        "to": change.to_status,
        "to_label": label(agencies.STATUSES, change.to_status, language),
        "reason": change.reason,
        "actor": change.actor,
        "user": username,
    }


def _detail(session: Session, agency: Agency) -> dict[str, Any]:
    language = current_language()
    view = agency_json(agency, _town_names(session), _today(), language)
    view["allowed_statuses"] = list(agencies.STATUS_TRANSITIONS[agency.status])
    view["history"] = [status_change_json(change, username, language)
                       for change, username in agencies.history(session, agency.id)]
    return view


def _agency_or_404(session: Session, agency_id: int) -> Agency:
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise ApiError(404, "not_found", N_("Agency %(value)s was not found."), field="id", value=agency_id)
    return agency


def _town_names(session: Session) -> dict[str, str]:
    return {town.code: town.name for town in session.exec(select(Town)).all()}


def _today() -> date:
    return local(now(), runtime().settings.timezone).date()


def _date(value: date | None) -> str | None:
    return value.isoformat() if value else None
