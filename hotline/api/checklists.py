"""JSON API of a ticket's 帮办 checklist: staff read it and change its items."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify
from sqlmodel import Session, select

from hotline import checklists
from hotline.api.auth import STAFF_ROLES, require
from hotline.api.bodies import json_object
from hotline.api.errors import ApiError
from hotline.clock import isoformat, now
from hotline.i18n import current_language
from hotline.models import ChecklistItem, Ticket
from hotline.validation import N_
from hotline.vocabulary import label

bp = Blueprint("api_checklists", __name__, url_prefix="/api/v1")


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/tickets/<number>/checklist")
@require(roles=STAFF_ROLES)
def get_checklist(number: str):
    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        items = checklists.items_of(session, ticket)
        if not items:
            raise ApiError(404, "no_checklist", N_("Ticket %(number)s has no checklist."), field="number",
                           number=number)
        return jsonify(checklist_json(ticket, items, current_language()))


@bp.patch("/tickets/<number>/checklist")
@require(roles=STAFF_ROLES)
def update_checklist(number: str):
    changes = checklists.parse_changes(json_object())
    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        items = checklists.update_items(session, ticket, changes, g.caller.actor, now())
        return jsonify(checklist_json(ticket, items, current_language()))


def checklist_json(ticket: Ticket, items: list[ChecklistItem], language: str) -> dict[str, Any]:
    """Build the checklist of a ticket: its items in order and how many are still open."""
    return {
        "number": ticket.number,
        "open_items": sum(1 for item in items if item.status in checklists.OPEN_STATUSES),
        "items": [item_json(item, language) for item in items],
    }


def item_json(item: ChecklistItem, language: str) -> dict[str, Any]:
    return {
        "code": item.code,
        "title": item.title_en if language == "en" else item.title,
        "office": item.office,
        "documents": item.documents or [],
        "status": item.status,
        "status_label": label(checklists.STATUSES, item.status, language),
        "note": item.note,
        "updated_by": item.updated_by,
        "updated_at": isoformat(item.updated_at),
    }


def _ticket_or_404(session: Session, number: str) -> Ticket:
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None:
        raise ApiError(404, "not_found", N_("Ticket %(number)s was not found."), field="number", number=number)
    return ticket
