"""The ticket page (details, timeline, SLA clocks, rule trace, offers, 帮办 checklist, related tickets and
merging, claim, status change) and new tickets."""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from sqlalchemy import text
from sqlmodel import Session, select
from werkzeug.datastructures import MultiDict

from hotline import checklists, merging, phones, system_reasons, tickets
from hotline.clock import as_aware_utc, now
from hotline.i18n import current_language
from hotline.models import Agency, ChecklistItem, Offer, Referral, SlaClock, Ticket, TicketEvent, Town, User
from hotline.referrers import add_note, is_portal_referral
from hotline.rules import explain
from hotline.validation import InputError, unknown_value
from hotline.vocabulary import (
    CATEGORIES,
    CHANNELS,
    DEATH_PLACES,
    FINAL_STATUSES,
    FLAGS,
    NEEDS,
    OPEN_STATUSES,
    SLA_STATES,
    SOURCES,
    STATUSES,
    TRANSITIONS,
    label,
)
from hotline.web import dispatch_panel, display

log = logging.getLogger("hotline.web.tickets")

bp = Blueprint("web_tickets", __name__, url_prefix="/tickets")

HAND_CHANNELS = ("walk_in", "phone")
HAND_PREFIX = "hand-"
FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,43}$")
NOTE_MAX = 2000
NAME_MAX = 64
COMMITTEE_MAX = 64
ADDRESS_MAX = 200


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/<number>")
@login_required
def ticket_page(number: str):
    return _render_ticket(number)


@bp.post("/<number>/claim")
@login_required
def claim(number: str):
    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        if ticket.status in FINAL_STATUSES:
            flash(gettext("Ticket %(number)s is finished and cannot be claimed.", number=number), "error")
        elif tickets.claim(session, runtime(), ticket, current_user.id, current_user.actor, now()):
            flash(gettext("You have claimed ticket %(number)s.", number=number), "success")
        else:
            flash(gettext("Ticket %(number)s is already claimed by someone else.", number=number), "error")
    return redirect(url_for("web_tickets.ticket_page", number=number))


@bp.post("/<number>/status")
@login_required
def change_status(number: str):
    to_status = request.form.get("to") or ""
    reason = (request.form.get("reason") or "").strip()[:500] or None
    try:
        with runtime().transaction() as session:
            ticket = _ticket_or_404(session, number)
            # A status change may withdraw offers, so it queues behind dispatch actions on the ticket.
            tickets.lock_ticket(session, ticket)
            tickets.transition(session, runtime(), ticket, to_status, current_user.actor, reason, now())
    except tickets.TransitionError as error:
        return _render_ticket(number, status_error=_transition_message(error), reason=reason or "",
                              chosen=to_status, http_status=422)
    flash(gettext("Status changed to %(status)s.", status=label(STATUSES, to_status, current_language())), "success")
    return redirect(url_for("web_tickets.ticket_page", number=number))


@bp.post("/<number>/checklist")
@login_required
def change_checklist_item(number: str):
    """Change one checklist item from its row on the ticket page; an empty note clears the note."""
    change = checklists.ItemChange(code=request.form.get("code") or "", status=request.form.get("status") or None,
                                   note=(request.form.get("note") or "").strip()[:checklists.NOTE_MAX])
    try:
        with runtime().transaction() as session:
            ticket = _ticket_or_404(session, number)
            if change.status is not None and change.status not in checklists.STATUSES:
                raise unknown_value("status", change.status, checklists.STATUSES)
            items = checklists.update_items(session, ticket, [change], current_user.actor, now())
            title = next(_item_title(item, current_language()) for item in items if item.code == change.code)
    except InputError as error:
        flash(gettext(error.template, **error.params), "error")
    else:
        flash(gettext("Checklist item %(item)s saved.", item=title), "success")
    return redirect(url_for("web_tickets.ticket_page", number=number, _anchor="checklist-heading"))


@bp.post("/<number>/notes")
@login_required
def add_ticket_note(number: str):
    """Add an operator's note; one marked for the referrer of a portal referral shows on the portal."""
    text = (request.form.get("note") or "").strip()
    if not text:
        flash(gettext("Write the note before adding it."), "error")
        return redirect(url_for("web_tickets.ticket_page", number=number, _anchor="note-heading"))

    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        referral = session.exec(select(Referral).where(Referral.ticket_id == ticket.id)).first()
        visible = request.form.get("visible_to_referrer") == "yes" and referral is not None \
            and is_portal_referral(referral)
        add_note(session, ticket, text, visible, current_user.actor, now())
    log.info("Web tickets: %s added a note to %s (for the referrer: %s)", current_user.username, number, visible)
    flash(gettext("Note added; the referrer can read it on the portal.") if visible else gettext("Note added."),
          "success")
    return redirect(url_for("web_tickets.ticket_page", number=number, _anchor="note-heading"))


@bp.post("/<number>/merge")
@login_required
def merge(number: str):
    """Merge the ticket named in the form's `from` into this one; the form's reason is required."""
    duplicate_number = (request.form.get("from") or "").strip()
    reason = (request.form.get("reason") or "").strip()
    try:
        with runtime().transaction() as session:
            survivor = _ticket_or_404(session, number)
            duplicate = merging.find_ticket(session, duplicate_number, "from")
            merging.merge(session, runtime(), survivor, duplicate, current_user.actor, reason, now())
    except InputError as error:
        return _render_ticket(number, merge_error=gettext(error.template, **error.params),
                              merge_from=duplicate_number, merge_reason=reason,
                              http_status=409 if error.status == 409 else 422)
    log.info("Web tickets: %s merged %s into %s", current_user.username, duplicate_number, number)
    flash(gettext("Ticket %(duplicate)s was merged into this ticket and cancelled.", duplicate=duplicate_number),
          "success")
    return redirect(url_for("web_tickets.ticket_page", number=number, _anchor="related-heading"))


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new_ticket():
    """Open a ticket by hand for a walk-in or a call taken outside the phone system."""
    with runtime().transaction() as session:
        towns = session.exec(select(Town).order_by(Town.code)).all()
    form = request.form if request.method == "POST" else MultiDict()
    errors: dict[str, str] = {}
    form_token = request.form.get("form_token", "") if request.method == "POST" else secrets.token_urlsafe(16)
    if request.method == "POST":
        fields, errors = _hand_ticket_fields(request.form, {town.code for town in towns})
        if not errors:
            number, created = _create_hand_ticket(fields, form_token if FORM_TOKEN.match(form_token) else None)
            if created:
                flash(gettext("Ticket %(number)s created.", number=number), "success")
            else:
                flash(gettext("This form was already sent as ticket %(number)s; no second ticket was opened.",
                              number=number), "success")
            return redirect(url_for("web_tickets.ticket_page", number=number))
    language = current_language()
    return render_template(
        "ticket_new.html", form=form, errors=errors, towns=towns, language=language, form_token=form_token,
        channels=[(code, label(CHANNELS, code, language)) for code in HAND_CHANNELS],
        categories=[(code, label(CATEGORIES, code, language)) for code in CATEGORIES],
        needs=[(code, label(NEEDS, code, language)) for code in NEEDS],
        flags=[(code, label(FLAGS, code, language)) for code in FLAGS],
    ), 422 if errors else 200


def _hand_ticket_fields(form, town_codes: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Check the new-ticket form and return the ticket fields and a message per invalid field."""
    errors = {}
    channel = form.get("channel")
    category = form.get("category")
    town = form.get("town") or None
    if channel not in HAND_CHANNELS:
        errors["channel"] = gettext("Choose how the request came in.")
    if category not in CATEGORIES:
        errors["category"] = gettext("Choose a category.")
    if town is not None and town not in town_codes:
        errors["town"] = gettext("Choose a town from the list.")

    phone = None
    raw_phone = (form.get("caller_phone") or "").strip()
    if raw_phone:
        try:
            phone = phones.normalise(raw_phone)
        except phones.MultiplePhoneNumbers:
            errors["caller_phone"] = gettext("Write one phone number here; put any other number in the note.")
        except phones.InvalidPhoneNumber:
            errors["caller_phone"] = gettext(
                "Phone number %(value)s is not a valid number; write a mobile number such as 13812345678 or a "
                "landline with its area code such as 021-59200496.", value=raw_phone)
    elif channel == "phone":
        errors["caller_phone"] = gettext("A phone call needs the caller's number.")

    fields = {
        "channel": channel, "source": "resident", "category": category,
        "needs": [code for code in form.getlist("needs") if code in NEEDS],
        "flags": [code for code in form.getlist("flags") if code in FLAGS],
        "town_code": town, "committee": (form.get("committee") or "").strip()[:COMMITTEE_MAX] or None,
        "address": (form.get("address") or "").strip()[:ADDRESS_MAX] or None,
        "caller_name": (form.get("caller_name") or "").strip()[:NAME_MAX] or None,
        "caller_phone": phone.e164 if phone else None, "caller_phone_ext": phone.extension if phone else None,
        "note": (form.get("note") or "").strip()[:NOTE_MAX] or None,
    }
    return fields, errors


def _create_hand_ticket(fields: dict[str, Any], form_token: str | None) -> tuple[str, bool]:
    """Open the ticket and claim it for the staff member who opened it, who is serving the person already.

    The form's one-time token is kept as the ticket's external_id, so a form sent twice (a double click,
    a reload) opens one ticket. Return its number and whether this request created it.
    """
    at = now()
    with runtime().transaction() as session:
        external_id = None if form_token is None else f"{HAND_PREFIX}{form_token}"
        if external_id is not None:
            earlier = _hand_ticket_of(session, external_id)
            if earlier is not None:
                return earlier.number, False
        ticket = tickets.create_ticket(session, runtime(), at, actor=current_user.actor, external_id=external_id,
                                       **fields)
        tickets.assign_numbers(session, runtime().settings.timezone)
        tickets.claim(session, runtime(), ticket, current_user.id, current_user.actor, at)
        number = ticket.number
    log.info("Web tickets: %s opened and claimed %s by hand (%s)", current_user.username, number, fields["channel"])
    return number, True


def _hand_ticket_of(session: Session, external_id: str) -> Ticket | None:
    """Find the ticket a form token already opened; on PostgreSQL, wait for a concurrent send of it first.

    SQLite runs one writing transaction at a time, so only PostgreSQL needs the advisory lock, which
    holds until this transaction ends.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": external_id})
    return session.exec(select(Ticket).where(Ticket.external_id == external_id)
                        .where(Ticket.channel.in_(HAND_CHANNELS))).first()


def _transition_message(error: tickets.TransitionError) -> str:
    """Word a refused status change in the page's language, with status labels instead of codes."""
    language = current_language()
    params = {key: label(STATUSES, value, language) if key.endswith("status") else value
              for key, value in error.params.items()}
    return gettext(error.template, **params)


def render_with_dispatch_error(number: str, message: str):
    """Render the ticket as it is now, with `message` in its dispatch panel and status 409."""
    return _render_ticket(number, http_status=409, dispatch_error=message)


def _render_ticket(number: str, status_error: str | None = None, reason: str = "", chosen: str = "",
                   http_status: int = 200, merge_error: str | None = None, merge_from: str = "",
                   merge_reason: str = "", dispatch_error: str | None = None):
    language = current_language()
    with runtime().transaction() as session:
        ticket = _ticket_or_404(session, number)
        context = _ticket_context(session, ticket, language)
    context.update(status_error=status_error, reason=reason, chosen=chosen, language=language,
                   merge_error=merge_error, merge_from=merge_from, merge_reason=merge_reason,
                   dispatch_error=dispatch_error)
    return render_template("ticket.html", **context), http_status


def _ticket_context(session: Session, ticket: Ticket, language: str) -> dict[str, Any]:
    at = now()
    tz = runtime().settings.timezone
    users = {user.id: user.display_name for user in session.exec(select(User)).all()}
    agencies = {agency.id: agency.name for agency in session.exec(select(Agency)).all()}
    town = session.get(Town, ticket.town_code) if ticket.town_code else None
    referral = session.exec(select(Referral).where(Referral.ticket_id == ticket.id)).first()
    clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)).all()
    offers = session.exec(select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt)).all()
    events = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                          .order_by(TicketEvent.at, TicketEvent.id)).all()

    return {
        "ticket": ticket,
        "town": town.name if town else "",
        "referral": referral,
        "referrer_can_read": referral is not None and is_portal_referral(referral),
        "source": label(SOURCES, ticket.source, language),
        "channel": label(CHANNELS, ticket.channel, language),
        "category": label(CATEGORIES, ticket.category, language),
        "status": label(STATUSES, ticket.status, language),
        "needs": [label(NEEDS, code, language) for code in ticket.needs or []],
        "flags": [label(FLAGS, code, language) for code in ticket.flags or []],
        "assignee": users.get(ticket.assigned_to_id, "") if ticket.assigned_to_id else "",
        "created": display.show_time(ticket.created_at, tz),
        "death": _death_text(ticket, tz, language),
        "reasons": [reason.get("text_en" if language == "en" else "text_zh") or reason.get("text_zh")
                    for reason in ticket.priority_reasons or []],
        "rule_trace": explain.ticket_trace(ticket, language, tz),
        "clocks": [_clock_row(clock, at, tz, language) for clock in clocks],
        "offers": [_offer_row(offer, agencies, at, tz, language) for offer in offers],
        "events": [_event_row(event, users, agencies, tz, language) for event in events],
        "targets": [(code, label(STATUSES, code, language), code in tickets.REASON_REQUIRED
                     or (ticket.status, code) == tickets.REOPEN)
                    for code in TRANSITIONS.get(ticket.status, ())],
        "may_claim": ticket.assigned_to_id is None and ticket.status not in FINAL_STATUSES,
        **_checklist_context(session, ticket, users, agencies, tz, language),
        **_related_context(session, ticket, at, tz, language),
        **dispatch_panel.panel_context(session, ticket, language),
    }


def _related_context(session: Session, ticket: Ticket, at, tz, language: str) -> dict[str, Any]:
    """Build the related-tickets section: tickets of the same caller or death, and where this one went."""
    merged_into = session.get(Ticket, ticket.merged_into_id) if ticket.merged_into_id else None
    may_merge_here = ticket.status in OPEN_STATUSES and merged_into is None
    return {
        "related": [_related_row(row, may_merge_here, tz, language)
                    for row in merging.related_tickets(session, ticket, at)],
        "merged_into": merged_into.number if merged_into else "",
    }


def _related_row(row: merging.RelatedTicket, may_merge_here: bool, tz, language: str) -> dict[str, Any]:
    matches = []
    if row.same_phone:
        matches.append(gettext("Same caller number"))
    if row.same_death:
        matches.append(gettext("Same time of death"))
    if row.merged_here:
        matches.append(gettext("Merged into this ticket"))
    return {
        "number": row.ticket.number,
        "status": label(STATUSES, row.ticket.status, language),
        "category": label(CATEGORIES, row.ticket.category, language),
        "created": display.show_time(row.ticket.created_at, tz),
        "matches": "、".join(matches),
        "mergeable": may_merge_here and row.mergeable,
    }


def _checklist_context(session: Session, ticket: Ticket, users, agencies, tz, language: str) -> dict[str, Any]:
    """Build the checklist section: one row per item, the statuses to choose from, and what blocks resolving."""
    items = checklists.items_of(session, ticket)
    still_open = [item for item in items if item.status in checklists.OPEN_STATUSES]
    return {
        "checklist": [_checklist_row(item, users, agencies, tz, language) for item in items],
        "checklist_statuses": [(code, label(checklists.STATUSES, code, language)) for code in checklists.STATUSES],
        "checklist_open": checklists.titles(still_open),
        "checklist_locked": ticket.status in checklists.LOCKED_TICKET_STATUSES,
    }


def _checklist_row(item: ChecklistItem, users, agencies, tz, language: str) -> dict[str, Any]:
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
    }


def _item_title(item: ChecklistItem, language: str) -> str:
    return item.title_en if language == "en" else item.title


def _death_time_parts(text: str, ticket: Ticket, tz) -> list[str]:
    try:
        died_at = datetime.fromisoformat(text)
        local_time = display.show_time(died_at, tz)
        later = died_at > as_aware_utc(ticket.created_at)
    except (ValueError, OverflowError, TypeError):
        return [text]
    return [local_time, gettext("later than the ticket was opened; please check")] if later else [local_time]


def _death_text(ticket: Ticket, tz, language: str) -> str:
    """Word the time and place of death a referral gave, such as "2026-12-07 06:10 · 家中".

    Intake accepts a time of death up to ten minutes after the referral arrived, for a source whose clock
    runs fast, and tickets filed before that check may hold later times. The page flags such a time for
    the operator to check. A stored time that cannot be shown in Asia/Shanghai, such as one in year 1, is
    shown as stored.
    """
    deceased = ticket.deceased or {}
    parts = []
    if deceased.get("died_at"):
        parts.extend(_death_time_parts(deceased["died_at"], ticket, tz))
    if deceased.get("place"):
        parts.append(label(DEATH_PLACES, deceased["place"], language))
    return " · ".join(parts)


def _clock_row(clock: SlaClock, at, tz, language: str) -> dict[str, Any]:
    state = display.clock_state(clock)
    live = clock.state == "running"
    colour = display.sla_state(clock.due_at, getattr(clock, "warn_at", None), clock.breached_at is not None, at) \
        if live else ("breached" if state == "breached" else "none")
    return {
        "target": label(display.SLA_TARGETS, clock.target, language),
        "due": display.show_time(clock.due_at, tz),
        "state": label(SLA_STATES, state, language),
        "colour": colour,
        "countdown": display.countdown_text(clock.due_at, at, language) if live else "",
        "arithmetic": display.clock_arithmetic(clock, tz, language, runtime().component("calendars")),
        "provisional": clock.provisional,
    }


def _offer_row(offer: Offer, agencies, at, tz, language: str) -> dict[str, Any]:
    pending = offer.state == "pending"
    return {
        "agency": agencies.get(offer.agency_id, str(offer.agency_id)),
        "state": label(display.OFFER_STATES, offer.state, language),
        "accept_by": display.show_time(offer.accept_by, tz),
        "countdown": display.countdown_text(offer.accept_by, at, language) if pending else "",
        "reason": system_reasons.worded(offer.reason, language),
        "response_reason": system_reasons.worded(offer.response_reason, language),
        "code": offer.code,
    }


def _event_row(event: TicketEvent, users, agencies, tz, language: str) -> dict[str, Any]:
    """Word an event for the timeline. An event copied from a merged ticket is worded as the original and
    marked with the number it came from."""
    kind, data = event.kind, event.data
    origin = (data or {}).get("merged_from")
    if kind == merging.COPIED:
        kind, data = data.get("kind", kind), data.get("data")
    if kind in checklists.EVENT_KINDS:
        row = _checklist_event_row(event, kind, data, users, agencies, tz, language)
    else:
        row = {
            "at": display.show_time(event.at, tz),
            "kind": _event_kind_label(kind, language),
            "actor": display.actor_text(event.actor, users, agencies, language),
            "change": display.event_change(kind, event.from_value, event.to_value, data, users, tz, language),
            "reason": system_reasons.worded(event.reason, language),
        }
    if origin:
        row["kind"] = gettext("%(kind)s (from %(number)s)", kind=row["kind"], number=origin)
    return row


def _event_kind_label(kind: str, language: str) -> str:
    if kind in merging.EVENT_KINDS:
        return label(merging.EVENT_KINDS, kind, language)
    return label(display.EVENT_KINDS, kind, language)


def _checklist_event_row(event: TicketEvent, kind: str, data: dict[str, Any] | None, users, agencies, tz,
                         language: str) -> dict[str, Any]:
    """Word a checklist event for the timeline: the item's title and its status change, in the page's language."""
    data = data or {}
    if kind == "checklist_item":
        change = f"{data.get('title', '')} · {label(checklists.STATUSES, event.from_value or '', language)} → " \
                 f"{label(checklists.STATUSES, event.to_value or '', language)}"
    else:
        change = gettext("%(count)s items", count=len(data.get("items") or []))
    return {
        "at": display.show_time(event.at, tz),
        "kind": label(checklists.EVENT_KINDS, kind, language),
        "actor": display.actor_text(event.actor, users, agencies, language),
        "change": change,
        "reason": system_reasons.worded(event.reason, language),
    }


def _ticket_or_404(session: Session, number: str) -> Ticket:
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None:
        abort(404)
    return ticket

