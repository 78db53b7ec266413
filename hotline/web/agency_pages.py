"""The supervisor's agency page and the status change form of the dashboard's agency table.

The page shows an agency's documents, its pending and accepted offers and its vetting status history. A
status change takes two requests. The first checks the form and returns a confirmation that names the
agency and the offers the change would withdraw. The second, with confirmed=yes, applies the change through
hotline.dispatch.withdrawals.change_agency_status, as the API and the CLI do. Every form of these pages carries
the status that the page showed, and a form whose agency has another status by then is rejected with code
"conflict".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext, ngettext, pgettext
from flask_login import current_user
from sqlmodel import Session, select

from hotline import agencies, system_reasons
from hotline.clock import local, now
from hotline.dispatch import withdrawals
from hotline.i18n import current_language
from hotline.models import Agency, Offer, Ticket, User
from hotline.validation import InputError
from hotline.vocabulary import label
from hotline.web import display
from hotline.web.auth import SUPERVISORS, roles_required

log = logging.getLogger("hotline.web.agencies")

bp = Blueprint("web_agencies", __name__, url_prefix="/supervisor/agencies")

# Pages a status change form may return to. Any other value returns to the dashboard.
RETURN_PAGES = ("dashboard", "agency")
CONFIRMED = "yes"


@dataclass(frozen=True)
class StatusForm:
    """A status change form as sent: the new status, the reason, and the status the page showed."""

    status: str
    reason: str
    seen_status: str
    back: str
    confirmed: bool

    @classmethod
    def from_request(cls) -> StatusForm:
        back = request.form.get("back", "")
        return cls(status=request.form.get("status", ""), reason=request.form.get("reason", ""),
                   seen_status=request.form.get("from_status", ""),
                   back=back if back in RETURN_PAGES else RETURN_PAGES[0],
                   confirmed=request.form.get("confirmed") == CONFIRMED)


def runtime():
    return current_app.extensions["hotline"]


def action_label(status: str) -> str:
    """Return the label of the button that sets `status`, in the request's language."""
    # The context keeps "Revoke" apart from the token page's button, which is translated differently.
    labels = {
        "approved": pgettext("agency action", "Approve"),
        "watch": pgettext("agency action", "Put on watch"),
        "suspended": pgettext("agency action", "Suspend"),
        "revoked": pgettext("agency action", "Revoke"),
    }
    return labels[status]


def status_actions(status: str) -> list[tuple[str, str]]:
    """Return (status, button label) for each status that the status machine allows from `status`."""
    return [(to_status, action_label(to_status)) for to_status in agencies.STATUS_TRANSITIONS[status]]


def may_change_status() -> bool:
    return current_user.is_authenticated and current_user.role in agencies.STATUS_ROLES


@bp.get("/<int:agency_id>")
@roles_required(*SUPERVISORS)
def agency_page(agency_id: int):
    return _render(agency_id)


@bp.post("/<int:agency_id>/status")
@roles_required(*agencies.STATUS_ROLES)
def change_status(agency_id: int):
    """Check a status change and ask for confirmation, or apply a confirmed one and return to the page it came from.

    A rejected change renders the agency page with the message and the HTTP status of the InputError.
    """
    form = StatusForm.from_request()
    try:
        if form.confirmed:
            return _apply(agency_id, form)
        return _confirm(agency_id, form)
    except InputError as error:
        log.info("Web agencies: status change of agency %s to %r by user %s rejected: %s", agency_id, form.status,
                 current_user.id, error.code)
        return _render(agency_id, form=form, error=error_message(error, current_language()),
                       status=error.status)


def _confirm(agency_id: int, form: StatusForm):
    with runtime().transaction() as session:
        agency = _agency_or_404(session, agency_id)
        _check_seen_status(agency, form)
        preview = withdrawals.preview_status_change(session, runtime(), agency, form.status, form.reason, now())
        confirmation = _confirmation_view(agency, preview, current_language())
    return _render(agency_id, form=form, confirmation=confirmation)


def _apply(agency_id: int, form: StatusForm):
    language = current_language()
    with runtime().transaction() as session:
        agency = _agency_or_404(session, agency_id)
        _check_seen_status(agency, form)
        outcome = withdrawals.change_agency_status(session, runtime(), agency, form.status, form.reason,
                                                   current_user.actor, current_user.id, now())
        messages = outcome_messages(agency, outcome, _today(), language)

    for category, message in messages:
        flash(message, category)
    if form.back == "agency":
        return redirect(url_for("web_agencies.agency_page", agency_id=agency_id))
    # The dashboard opens at its top, where base.html shows the flash messages.
    return redirect(url_for("web_dashboard.dashboard"))


def _check_seen_status(agency: Agency, form: StatusForm) -> None:
    """Reject a form filled in while the agency had another status, because its confirmation no longer holds."""
    if form.seen_status and form.seen_status != agency.status:
        raise agencies.conflict_error(agency)


def _render(agency_id: int, form: StatusForm | None = None, error: str | None = None,
            confirmation: dict[str, Any] | None = None, status: int = 200):
    language = current_language()
    with runtime().transaction() as session:
        agency = _agency_or_404(session, agency_id)
        view = _agency_view(session, agency, language)
    page = render_template("agency.html", agency=view, form=form, error=error, confirmation=confirmation,
                           may_change_status=may_change_status(), reason_limit=agencies.MAX_REASON_LENGTH,
                           language=language, timezone=runtime().settings.timezone.key)
    return page, status


def _agency_view(session: Session, agency: Agency, language: str) -> dict[str, Any]:
    today = _today()
    expiries = agencies.document_expiries(agency)
    expired = agencies.expired_documents(agency, today)
    return {
        "id": agency.id,
        "name": agency.name,
        "kind_label": label(agencies.KINDS, agency.kind, language),
        "status": agency.status,
        "status_label": status_label(agency.status, language),
        "may_receive_offers": agencies.may_receive_offers(agency, today),
        "capacity": agency.capacity,
        "contact_phone": agency.contact_phone,
        "documents": [{"label": label(agencies.DOCUMENTS, name, language),
                       "expires_on": expires_on.isoformat() if expires_on else "",
                       "expired": name in expired} for name, expires_on in expiries.items()],
        "pending": [_offer_link(offer, ticket) for offer, ticket in withdrawals.pending_offers(session, agency)],
        "accepted": [_offer_link(offer, ticket) for offer, ticket in withdrawals.accepted_open_offers(session, agency)],
        "actions": status_actions(agency.status),
        "history": _history_rows(session, agency, language),
    }


def _history_rows(session: Session, agency: Agency, language: str) -> list[dict[str, str]]:
    users = {user.id: user.display_name for user in session.exec(select(User)).all()}
    tz = runtime().settings.timezone
    return [{
        "at": display.show_time(change.at, tz),
        "from": status_label(change.from_status, language) if change.from_status else gettext("(registered)"),
        "to": status_label(change.to_status, language),
        "reason": system_reasons.worded(change.reason, language),
        "actor": display.actor_text(change.actor, users, {}, language),
    } for change, _username in agencies.history(session, agency.id)]


def _confirmation_view(agency: Agency, preview: withdrawals.StatusChangePreview, language: str) -> dict[str, Any]:
    today = _today()
    stays_out = preview.leaves_dispatch and preview.to_status in agencies.DISPATCHABLE_STATUSES
    return {
        "action": action_label(preview.to_status),
        "from_status": preview.from_status,
        "from_label": status_label(preview.from_status, language),
        "to_label": status_label(preview.to_status, language),
        "reason": preview.reason,
        "leaves_dispatch": preview.leaves_dispatch,
        "pending": [_offer_link(offer, ticket) for offer, ticket in preview.pending],
        "accepted": [_offer_link(offer, ticket) for offer, ticket in preview.still_accepted],
        "expired_documents": _document_names(agencies.expired_documents(agency, today), language) if stays_out else "",
    }


def outcome_messages(agency: Agency, outcome: withdrawals.StatusChangeOutcome, today: date,
                     language: str) -> list[tuple[str, str]]:
    """Word a status change for the flash messages: the change, the offers withdrawn, the accepted offers left."""
    change = outcome.change
    messages = [("success", gettext("%(name)s: %(from_status)s → %(to_status)s. Reason: %(reason)s",
                                    name=agency.name, from_status=status_label(change.from_status, language),
                                    to_status=status_label(change.to_status, language), reason=change.reason))]
    receives_offers = agencies.may_receive_offers(agency, today)
    if outcome.withdrawn:
        messages.append(("info", ngettext(
            "Withdrew %(num)d pending offer, told the agency by SMS and dispatched its ticket again: %(tickets)s.",
            "Withdrew %(num)d pending offers, told the agency by SMS and dispatched each ticket again: %(tickets)s.",
            len(outcome.withdrawn), tickets=_ticket_list(outcome.withdrawn, language))))
    elif not receives_offers:
        messages.append(("info", gettext("No offer was pending with %(name)s, so none was withdrawn.",
                                         name=agency.name)))
    if outcome.still_accepted:
        messages.append(("warning", ngettext(
            "%(num)d accepted offer on an open ticket stays with %(name)s and needs a person: %(tickets)s. To give "
            "it to another agency, withdraw the offer on the ticket page.",
            "%(num)d accepted offers on open tickets stay with %(name)s and need a person: %(tickets)s. To give "
            "one to another agency, withdraw its offer on the ticket page.",
            len(outcome.still_accepted), name=agency.name, tickets=_ticket_list(outcome.still_accepted, language))))
    expired = agencies.expired_documents(agency, today)
    if change.to_status in agencies.DISPATCHABLE_STATUSES and expired:
        messages.append(("warning", gettext("%(documents)s of %(name)s expired, so it still receives no offers.",
                                            documents=_document_names(expired, language), name=agency.name)))
    return messages


def error_message(error: InputError, language: str) -> str:
    """Translate a rejected status change for the page, with status labels in place of status codes."""
    params = dict(error.params)
    if error.code == "invalid_transition":
        allowed = agencies.STATUS_TRANSITIONS.get(params["from_status"], ())
        params["allowed"] = _join([status_label(code, language) for code in allowed], language) or "—"
        params["from_status"] = status_label(params["from_status"], language)
        params["to_status"] = status_label(params["to_status"], language)
        return gettext(error.template, **params)
    if error.code == "too_long":
        return gettext("The reason is longer than %(limit)s characters.", limit=params["limit"])
    if error.code == "invalid_value":
        return gettext("Unknown status %(value)s; choose one of the actions on the page.", value=params["value"])
    return gettext(error.template, **params)


def status_label(status: str, language: str) -> str:
    return label(agencies.STATUSES, status, language)


def _offer_link(offer: Offer, ticket: Ticket) -> dict[str, str]:
    return {"number": ticket.number, "code": offer.code,
            "url": url_for("web_tickets.ticket_page", number=ticket.number)}


def _ticket_list(offers: list[tuple[Offer, Ticket]], language: str) -> str:
    return _join([ticket.number for _offer, ticket in offers], language)


def _document_names(documents: list[str], language: str) -> str:
    return _join([label(agencies.DOCUMENTS, name, language) for name in documents], language)


def _join(items: list[str], language: str) -> str:
    return (", " if language == "en" else "、").join(items)


def _agency_or_404(session: Session, agency_id: int) -> Agency:
    agency = session.get(Agency, agency_id)
    if agency is None:
        abort(404)
    return agency


def _today() -> date:
    return local(now(), runtime().settings.timezone).date()
