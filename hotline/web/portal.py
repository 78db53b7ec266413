"""The referral portal: advisors and community workers file referrals and follow them from a phone.

A referrer logs in on the staff login page and may open only the portal, because every staff page returns
403 to them.
The form mirrors the body of POST /api/v1/referrals and files it through the same intake function, under
the account's source, with the account's name, phone and committee as the referrer. Its external id
comes from a token in the form, so submitting the same form twice files one ticket.
Referrers also search the knowledge base (portal_kb) and keep the 帮办 checklist of their assisted
applications (portal_checklist).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlmodel import Session, select
from werkzeug.datastructures import MultiDict

from hotline import checklists, intake
from hotline.api.idempotency import run_idempotent
from hotline.clock import as_aware_utc, now
from hotline.i18n import current_language
from hotline.models import ChecklistItem, SlaClock, Ticket, User
from hotline.referrers import (
    FORM_TOKEN,
    REFERRER_ROLES,
    REFERRER_STATUSES,
    accepted_agencies,
    is_referrer,
    latest_referrer_notes,
    new_form_token,
    own_referrals,
    portal_external_id,
)
from hotline.towns import all_towns, town_names
from hotline.validation import N_, InputError
from hotline.vocabulary import (
    CATEGORIES,
    DEATH_PLACES,
    FINAL_STATUSES,
    FLAGS,
    NEEDS,
    REFERRAL_CATEGORIES,
    SOURCES,
    label,
)
from hotline.web import display
from hotline.web.auth import roles_required

log = logging.getLogger("hotline.web.portal")

bp = Blueprint("web_portal", __name__, url_prefix="/portal")

LIST_LIMIT = 100
# Form fields named as take_referral names them in its errors; the referrer fields come from the account.
FORM_FIELDS = ("category", "needs", "flags", "note", "deceased.died_at", "deceased.place",
               *(f"resident.{field}" for field in intake.RESIDENT_FIELDS))
# Pages outside the portal that a referrer's session may open. The JSON API, the Twilio webhooks and the
# signed offer pages check a token, a signature or a signed link on every request and ignore the session.
REFERRER_ENDPOINTS = ("web_auth.login", "web_auth.logout", "static", "healthz")
SESSIONLESS_PATHS = ("/api/", "/twilio/", "/offers/")

SLA_WORDS = {
    "on_time": ("按时", "On time"),
    "at_risk": ("即将超时", "At risk"),
    "overdue": ("已超时", "Overdue"),
    "none": ("不计时", "Not timed"),
}
# The colour names of display.sla_state, in the referrer's words.
SLA_STATES = {"ok": "on_time", "warning": "at_risk", "breached": "overdue", "none": "none"}

# Messages shown next to a field, by the InputError code (and field) that take_referral raised. The API's
# messages name fields like resident.phone, which a referrer never sees on the form.
FIELD_MESSAGES = {
    "required": N_("Please fill in this field."),
    "too_long": N_("This is too long: write at most %(limit)s characters."),
    "invalid_value": N_("Choose one of the options shown."),
    "invalid_type": N_("Enter both the date and the time."),
    "time_in_future": N_("This time is more than 10 minutes later than now; enter when the death occurred."),
    "invalid_date": N_("This time is too early; check the year."),
    "multiple_phones": N_("Write one phone number here; put any other number in the note for the operator."),
}
FORM_EXPIRED_MESSAGE = N_("The form was out of date, so nothing was sent. Check the entries and send it again.")


def runtime():
    return current_app.extensions["hotline"]


@bp.before_app_request
def keep_referrers_in_portal():
    """Reject a referrer's request for a staff page with 403, but redirect the site's root to the portal."""
    if request.path.startswith(SESSIONLESS_PATHS) or request.blueprint == bp.name:
        return None
    if request.endpoint is None or request.endpoint in REFERRER_ENDPOINTS:
        return None
    if not current_user.is_authenticated or not is_referrer(current_user.role):
        return None
    if request.endpoint == "web_queue.queue":
        return redirect(url_for("web_portal.my_referrals"))
    log.warning("Portal: rejected %s %s of referrer %s", request.method, request.path, current_user.id)
    abort(403)


@bp.route("/referrals/new", methods=["GET", "POST"])
@roles_required(*REFERRER_ROLES)
def new_referral():
    account = _account()
    if request.method == "GET":
        return _render_form(account, MultiDict(), {}, new_form_token())

    form_token = request.form.get("form_token", "")
    if not FORM_TOKEN.match(form_token):
        return _render_form(account, request.form, {"": gettext(FORM_EXPIRED_MESSAGE)}, new_form_token(), 400)

    body = referral_body(request.form, account, portal_external_id(account.id, form_token))
    try:
        number, created = _file(account, body)
    except InputError as error:
        return _render_form(account, request.form, {_form_field(error.field): field_message(error)}, form_token, 422)

    if created:
        flash(gettext("Referral sent. Its ticket number is %(number)s.", number=number), "success")
    else:
        flash(gettext("This referral was already sent as ticket %(number)s; nothing was sent twice.",
                      number=number), "info")
    return redirect(url_for("web_portal.my_referrals"))


@bp.get("/referrals")
@roles_required(*REFERRER_ROLES)
def my_referrals():
    at = now()
    language = current_language()
    with runtime().transaction() as session:
        pairs = own_referrals(session, current_user.id, current_user.role, LIST_LIMIT)
        ticket_ids = [ticket.id for _, ticket in pairs]
        notes = latest_referrer_notes(session, ticket_ids)
        agencies = accepted_agencies(session, ticket_ids)
        clocks = _clocks(session, ticket_ids)
        towns = town_names(session)
        checklist_counts = _checklist_counts(session, ticket_ids)

    tz = runtime().settings.timezone
    rows = [{**_row(referral, ticket, notes.get(ticket.id), agencies.get(ticket.id), clocks.get(ticket.id, []),
                    towns, at, tz, language),
             "checklist": _checklist_link(ticket, checklist_counts.get(ticket.id))} for referral, ticket in pairs]
    return render_template("portal_referrals.html", rows=rows, limit=LIST_LIMIT, language=language)


# --- the form --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """The logged-in referrer's account, read afresh for each request."""

    id: int
    role: str
    display_name: str
    phone: str | None
    town_code: str | None
    town_name: str
    committee: str

    @property
    def org(self) -> str:
        """The referrer's organisation as the referral records it, such as 盈浦街道复兴居委."""
        return f"{self.town_name}{self.committee}"


def _account() -> Account:
    with runtime().transaction() as session:
        user = session.get(User, current_user.id)
        towns = town_names(session)
    return Account(id=user.id, role=user.role, display_name=user.display_name, phone=user.phone,
                   town_code=user.town_code, town_name=towns.get(user.town_code, "") if user.town_code else "",
                   committee=user.committee or "")


def referral_body(form, account: Account, external_id: str) -> dict[str, Any]:
    """Build the API body of a referral from the form; intake validates it as it validates the API's."""
    body: dict[str, Any] = {
        "external_id": external_id,
        "category": _text(form, "category"),
        "needs": form.getlist("needs"),
        "flags": form.getlist("flags"),
        "note": _text(form, "note"),
        "referrer": {"name": account.display_name, "org": account.org or None},
        "resident": {field: _text(form, f"resident.{field}") for field in intake.RESIDENT_FIELDS},
    }
    if account.phone:
        body["referrer"]["phone"] = account.phone
    deceased = {"died_at": _instant(_text(form, "deceased.died_at")), "place": _text(form, "deceased.place")}
    if any(deceased.values()):
        body["deceased"] = deceased
    return body


def _text(form, name: str) -> str | None:
    value = (form.get(name) or "").strip()
    return value or None


def _instant(value: str | None) -> str | None:
    """Give a datetime-local value (2026-12-07T06:10) the hotline's offset; leave anything else to intake."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=runtime().settings.timezone)
    return parsed.isoformat()


def _file(account: Account, body: dict[str, Any]) -> tuple[str, bool]:
    """File the referral under the account's source; return its ticket number and whether it is new."""

    def work(session: Session) -> tuple[str, bool]:
        result = intake.take_referral(session, runtime(), account.role, body, token_id=None, now=now())
        return result.ticket.number, result.created

    number, created = run_idempotent(runtime(), work)
    log.info("Portal: user %s filed %s as ticket %s (new: %s)", account.id, body["external_id"], number, created)
    return number, created


def field_message(error: InputError) -> str:
    """Word an intake error for the form, in the page's language, to show next to its field."""
    template = FIELD_MESSAGES.get(error.code)
    if template is None or _form_field(error.field) == "":
        return gettext(error.template, **error.params)
    return gettext(template, **error.params)


def _form_field(field: str | None) -> str:
    """Return the form field an error belongs to, or "" for errors the page shows above the form."""
    return field if field in FORM_FIELDS else ""


def _render_form(account: Account, form, errors: dict[str, str], form_token: str, status: int = 200):
    language = current_language()
    with runtime().transaction() as session:
        towns = all_towns(session)
    values = form if form else MultiDict({"resident.town": account.town_code or "",
                                          "resident.committee": account.committee})
    return render_template(
        "portal_new.html", form=values, errors=errors, form_token=form_token, account=account, towns=towns,
        source=label(SOURCES, account.role, language), language=language,
        categories=[(code, label(CATEGORIES, code, language)) for code in REFERRAL_CATEGORIES],
        needs=[(code, label(NEEDS, code, language)) for code in NEEDS],
        flags=[(code, label(FLAGS, code, language)) for code in FLAGS],
        places=[(code, label(DEATH_PLACES, code, language)) for code in DEATH_PLACES],
    ), status


# --- my referrals ----------------------------------------------------------------------------------


def _clocks(session: Session, ticket_ids: list[int]) -> dict[int, list[SlaClock]]:
    grouped: dict[int, list[SlaClock]] = {}
    if not ticket_ids:
        return grouped
    for clock in session.exec(select(SlaClock).where(SlaClock.ticket_id.in_(ticket_ids))).all():
        grouped.setdefault(clock.ticket_id, []).append(clock)
    return grouped


def _checklist_counts(session: Session, ticket_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Return (open items, all items) of each ticket that has a checklist."""
    counts: dict[int, tuple[int, int]] = {}
    if not ticket_ids:
        return counts
    for ticket_id, status in session.exec(select(ChecklistItem.ticket_id, ChecklistItem.status)
                                          .where(ChecklistItem.ticket_id.in_(ticket_ids))).all():
        still_open, total = counts.get(ticket_id, (0, 0))
        counts[ticket_id] = (still_open + (status in checklists.OPEN_STATUSES), total + 1)
    return counts


def _checklist_link(ticket: Ticket, counts: tuple[int, int] | None) -> dict[str, Any] | None:
    """Link an assisted application to its checklist page, with how many items are still open."""
    if ticket.category != checklists.CATEGORY or counts is None:
        return None
    still_open, total = counts
    return {"url": url_for("web_portal.referral_checklist", number=ticket.number), "open": still_open,
            "total": total}


def referral_sla_state(ticket: Ticket, clocks: list[SlaClock], at: datetime) -> str:
    """Judge a referral's time limit: on_time, at_risk, overdue or none (no clock).

    An open ticket is judged by its running clocks as the operators' queue judges it. A finished one is
    overdue when any of its clocks was breached, and on time otherwise.
    """
    if ticket.status in FINAL_STATUSES:
        if any(clock.breached_at is not None for clock in clocks):
            return "overdue"
        return "on_time" if any(clock.state == "met" for clock in clocks) else "none"

    running = [clock for clock in clocks if clock.state == "running"]
    breached = any(clock.breached_at is not None for clock in running)
    due_clock = next((clock for clock in running if ticket.due_at is not None
                      and as_aware_utc(clock.due_at) == as_aware_utc(ticket.due_at)), None)
    warn_at = due_clock.warn_at if due_clock is not None else None
    return SLA_STATES[display.sla_state(ticket.due_at, warn_at, breached, at)]


def _row(referral, ticket: Ticket, note, agency: str | None, clocks: list[SlaClock], towns: dict[str, str],
         at: datetime, tz, language: str) -> dict[str, Any]:
    sla = referral_sla_state(ticket, clocks, at)
    return {
        "number": ticket.number,
        "sent": display.show_time(referral.received_at, tz),
        "resident": ticket.caller_name or "",
        "place": f"{towns.get(ticket.town_code, '')}{ticket.committee or ''}" if ticket.town_code else "",
        "category": label(CATEGORIES, ticket.category, language),
        "status_code": ticket.status,
        "status": label(REFERRER_STATUSES, ticket.status, language),
        "agency": agency or "",
        "note": note.reason if note is not None else "",
        "note_at": display.show_time(note.at, tz) if note is not None else "",
        "sla_code": sla,
        "sla": label(SLA_WORDS, sla, language),
        "countdown": display.countdown_text(ticket.due_at, at, language) if sla == "at_risk" else "",
    }


# The knowledge base and the checklist are pages of this blueprint, kept in their own modules. Importing
# them here registers their routes whenever the portal is imported.
from hotline.web import portal_checklist, portal_kb  # noqa: E402, F401
