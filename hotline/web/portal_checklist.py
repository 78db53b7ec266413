"""The 帮办 checklist of a referral on the portal: its referrer reads the items and sets their status and note.

Only the referrer who filed the referral through the portal may open its checklist. Any other number
returns 404, so the page does not reveal which ticket numbers exist. Changes go through
hotline.checklists with the actor `user:<id>`, so the ticket's timeline names the referrer. A finished
ticket's checklist is read-only here, although staff may still record an item on a resolved ticket.

Each item's form carries a stamp of the item as the page showed it. When the item changed in between,
for instance because an operator saved it, the change is rejected and the page shows the item as it is now.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlmodel import Session, select

from hotline import checklists
from hotline.clock import as_aware_utc, now
from hotline.i18n import current_language
from hotline.models import Agency, ChecklistItem, Referral, Ticket, User
from hotline.referrers import REFERRER_ROLES, REFERRER_STATUSES, owner_prefix
from hotline.validation import N_, InputError
from hotline.vocabulary import FINAL_STATUSES, label
from hotline.web import display
from hotline.web.auth import roles_required
from hotline.web.portal import bp, runtime

log = logging.getLogger("hotline.web.portal")

# Messages shown next to an item, by the InputError code that parse_changes raised. The API's messages name
# fields like items[0].note, which a referrer never sees on the page.
ITEM_MESSAGES = {
    "required": N_("Choose a status or write a note."),
    "too_long": N_("This is too long: write at most %(limit)s characters."),
    "invalid_value": N_("Choose one of the options shown."),
}
FINISHED_MESSAGE = N_("Ticket %(number)s is finished, so its checklist can no longer be changed.")
UNKNOWN_ITEM_MESSAGE = N_("This item is not on the checklist. Reload the page and try again.")
STALE_MESSAGE = N_("Someone changed this item after you opened the page, so your change was not saved. The item "
                   "is shown as it is now; make your change again if it is still needed.")


@bp.get("/referrals/<number>/checklist")
@roles_required(*REFERRER_ROLES)
def referral_checklist(number: str):
    return _render(number, {}, {})


@bp.post("/referrals/<number>/checklist")
@roles_required(*REFERRER_ROLES)
def change_checklist_item(number: str):
    """Change one item's status and note; an empty note clears the note."""
    code = request.form.get("code") or ""
    try:
        with runtime().transaction() as session:
            title = _change_item(session, number, code)
    except InputError as error:
        return _rejected(number, code, error)

    flash(gettext("Checklist item %(item)s saved.", item=title), "success")
    return redirect(url_for("web_portal.referral_checklist", number=number, _anchor=f"item-{code}"))


# --- changing an item ------------------------------------------------------------------------------


def _change_item(session: Session, number: str, code: str) -> str:
    """Check and apply the posted change; return the item's title, or raise InputError with nothing changed."""
    ticket = own_checklist_ticket(session, number)
    if ticket.status in FINAL_STATUSES:
        raise InputError("ticket_finished", FINISHED_MESSAGE, status=409, number=ticket.number)

    item = _locked_item(session, ticket, code)
    if item_stamp(item) != request.form.get("seen", ""):
        log.info("Portal: rejected stale change of item %s on ticket %s by user %s", code, number, current_user.id)
        raise InputError("stale", STALE_MESSAGE, field=code, status=409)

    change = _parse_form(code)
    checklists.update_items(session, ticket, [change], current_user.actor, now())
    return _item_title(item, current_language())


def _parse_form(code: str) -> checklists.ItemChange:
    """Validate the form as the API body {"items": [{code, status, note}]} so both faces accept the same."""
    spec: dict[str, Any] = {"code": code}
    if request.form.get("status"):
        spec["status"] = request.form["status"]
    if "note" in request.form:
        spec["note"] = request.form["note"]
    return checklists.parse_changes({"items": [spec]})[0]


def _locked_item(session: Session, ticket: Ticket, code: str) -> ChecklistItem:
    """Read the item for update: PostgreSQL locks the row until commit, and SQLite serialises writers anyway."""
    item = session.exec(select(ChecklistItem).where(ChecklistItem.ticket_id == ticket.id)
                        .where(ChecklistItem.code == code).with_for_update()).first()
    if item is None:
        raise InputError("unknown_item", UNKNOWN_ITEM_MESSAGE, status=422)
    return item


def item_stamp(item: ChecklistItem) -> str:
    """Return a short digest of the item's status, note and last change, to notice changes made meanwhile."""
    changed_at = as_aware_utc(item.updated_at).isoformat() if item.updated_at else ""
    text = "\x1f".join((item.status, item.note or "", item.updated_by or "", changed_at))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _rejected(number: str, code: str, error: InputError):
    """Show the page again with the error next to the item, keeping what the referrer entered unless stale."""
    field = (error.field or "").rpartition(".")[2]
    template = ITEM_MESSAGES.get(error.code, error.template)
    message = gettext(template, **error.params)
    if error.code in ("ticket_finished", "unknown_item", "no_checklist", "ticket_closed"):
        return _render(number, {"": {"field": "", "message": message}}, {}, error.status)

    entered = {} if error.code == "stale" else {code: {"status": request.form.get("status", ""),
                                                       "note": request.form.get("note", "")}}
    return _render(number, {code: {"field": field if field in ("status", "note") else "", "message": message}},
                   entered, error.status)


# --- the page --------------------------------------------------------------------------------------


def own_checklist_ticket(session: Session, number: str) -> Ticket:
    """Return the assisted-application ticket of the current referrer's portal referral, or abort with 404."""
    ticket = session.exec(
        select(Ticket).join(Referral, Referral.ticket_id == Ticket.id)
        .where(Ticket.number == number)
        .where(Referral.source == current_user.role).where(Referral.token_id.is_(None))
        .where(Referral.external_id.startswith(owner_prefix(current_user.id), autoescape=True))
    ).first()
    if ticket is None or ticket.category != checklists.CATEGORY:
        abort(404)
    return ticket


def _render(number: str, errors: dict[str, dict[str, str]], entered: dict[str, dict[str, str]], status: int = 200):
    language = current_language()
    tz = runtime().settings.timezone
    with runtime().transaction() as session:
        ticket = own_checklist_ticket(session, number)
        items = checklists.items_of(session, ticket)
        users, agencies = _actor_names(session, items)
        rows = [_item_row(item, users, agencies, tz, language) for item in items]
        view = {"number": ticket.number, "resident": ticket.caller_name or "",
                "status": label(REFERRER_STATUSES, ticket.status, language)}
        read_only = ticket.status in FINAL_STATUSES

    return render_template(
        "portal_checklist.html", ticket=view, items=rows, read_only=read_only, errors=errors, entered=entered,
        statuses=[(code, label(checklists.STATUSES, code, language)) for code in checklists.STATUSES],
        note_max=checklists.NOTE_MAX, language=language,
    ), status


def _actor_names(session: Session, items: list[ChecklistItem]) -> tuple[dict[int, str], dict[int, str]]:
    """Return the names of the accounts and agencies that last changed the items."""
    ids: dict[str, set[int]] = {"user": set(), "agency": set()}
    for item in items:
        kind, _, key = (item.updated_by or "").partition(":")
        if kind in ids and key.isdigit():
            ids[kind].add(int(key))
    users: dict[int, str] = {}
    if ids["user"]:
        users = dict(session.exec(select(User.id, User.display_name).where(User.id.in_(ids["user"]))).all())
    agencies: dict[int, str] = {}
    if ids["agency"]:
        agencies = dict(session.exec(select(Agency.id, Agency.name).where(Agency.id.in_(ids["agency"]))).all())
    return users, agencies


def _item_row(item: ChecklistItem, users, agencies, tz, language: str) -> dict[str, Any]:
    return {
        "code": item.code,
        "title": _item_title(item, language),
        "office": item.office,
        "documents": item.documents or [],
        "status": item.status,
        "status_label": label(checklists.STATUSES, item.status, language),
        "note": item.note or "",
        "updated_by": display.actor_text(item.updated_by, users, agencies, language) if item.updated_by else "",
        "updated_at": display.show_time(item.updated_at, tz),
        "stamp": item_stamp(item),
    }


def _item_title(item: ChecklistItem, language: str) -> str:
    return item.title_en if language == "en" else item.title
