"""Merging a duplicate ticket into another through the JSON API."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, g, jsonify

from hotline import merging
from hotline.api.auth import STAFF_ROLES, require
from hotline.api.bodies import json_object
from hotline.api.views import ticket_detail
from hotline.clock import now
from hotline.i18n import current_language
from hotline.validation import N_, InputError, required, wrong_type

log = logging.getLogger("hotline.api.merge")

bp = Blueprint("api_merge", __name__, url_prefix="/api/v1/tickets")

BODY_FIELDS = ("from", "reason")


def runtime():
    return current_app.extensions["hotline"]


@bp.post("/<number>/merge")
@require(roles=STAFF_ROLES)
def merge_ticket(number: str):
    """Merge the ticket named in the body into this one: {"from": "QP-20261207-0002", "reason": "..."}."""
    duplicate_number, reason = _merge_body(json_object())
    with runtime().transaction() as session:
        survivor = merging.find_ticket(session, number, "number")
        duplicate = merging.find_ticket(session, duplicate_number, "from")
        merging.merge(session, runtime(), survivor, duplicate, g.caller.actor, reason, now())
        view = ticket_detail(session, survivor, g.caller.may_see_phones, current_language())
    log.info("API merge: %s merged %s into %s", g.caller.actor, duplicate_number, number)
    return jsonify(view)


def _merge_body(body: dict[str, Any]) -> tuple[str, str]:
    """Return the duplicate's number and the reason; raise a 422 naming the first field to fix."""
    for key in body:
        if key not in BODY_FIELDS:
            raise InputError("unknown_field", N_("Unknown field %(field)s; accepted fields: %(accepted)s."),
                             field=str(key), accepted=", ".join(BODY_FIELDS))
    duplicate_number = body.get("from")
    if duplicate_number is None:
        raise required("from")
    if not isinstance(duplicate_number, str):
        raise wrong_type("from", "string")
    if not duplicate_number.strip():
        raise required("from")
    reason = body.get("reason")
    if reason is None:
        raise required("reason")
    if not isinstance(reason, str):
        raise wrong_type("reason", "string")
    return duplicate_number.strip(), reason
