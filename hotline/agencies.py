"""The agency registry: registration fields, vetting status with its history, and document expiry.

Functions take a session and leave the commit to the caller, and they check everything before they write,
so a rejected request changes nothing. Input comes from the JSON API and the CLI as plain values
(strings, lists of strings, integers). A bad value raises InputError naming the field, with an English
message template that the caller translates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from hotline import agency_fields, system_reasons
from hotline.models import Agency, AgencyStatusChange, User
from hotline.validation import N_, InputError, unknown_value

log = logging.getLogger("hotline.agencies")

MINUTES_PER_DAY = 24 * 60

KINDS = {
    "funeral_home": ("区殡仪馆自有队伍", "Funeral home team"),
    "agency": ("殡葬代理机构", "Funeral agency"),
}
STATUSES = {
    "pending": ("待审核", "Pending vetting"),
    "approved": ("已准入", "Approved"),
    "watch": ("观察期", "On watch"),
    "suspended": ("已暂停", "Suspended"),
    "revoked": ("已撤销资格", "Revoked"),
}
# Every vetting status change the registry allows. Revoked is final. Because names are unique, an agency
# that is vetted again after a revocation needs a new registration under another name.
STATUS_TRANSITIONS = {
    "pending": ("approved", "revoked"),
    "approved": ("watch", "suspended", "revoked"),
    "watch": ("approved", "suspended", "revoked"),
    "suspended": ("approved", "watch", "revoked"),
    "revoked": (),
}
# Statuses that receive offers: an agency on watch keeps working while the bureau observes it.
DISPATCHABLE_STATUSES = ("approved", "watch")
# Wording in SMS and ticket events of each status that receives no offers.
OUT_OF_DISPATCH_STATUSES = {"pending": "机构尚未通过审核", "suspended": "机构已被暂停派单", "revoked": "机构资格已撤销"}
INITIAL_STATUS = "pending"
CREATION_REASON = system_reasons.AGENCY_REGISTERED
# Documents whose expiry takes an agency out of dispatch, with their labels.
DOCUMENTS = {"filing": ("备案", "Filing"), "licence": ("营业执照", "Business licence")}

CREATE_ROLES = ("admin",)
STATUS_ROLES = ("supervisor", "admin")
MAX_REASON_LENGTH = 500


def create_agency(session: Session, raw: Mapping[str, Any], actor: str, user_id: int | None,
                  now: datetime) -> Agency:
    """Register an agency as pending and record its creation as the first row of its history."""
    fields = agency_fields.clean(session, raw, partial=False)
    agency_fields.check_complete(fields)
    _check_unique(session, fields, agency_id=None)

    agency = Agency(status=INITIAL_STATUS, created_at=now, **fields)
    session.add(agency)
    session.flush()
    session.add(AgencyStatusChange(agency_id=agency.id, from_status=None, to_status=INITIAL_STATUS,
                                   reason=CREATION_REASON, actor=actor, user_id=user_id, at=now))
    log.info("Agencies: registered agency %s (%s) by %s", agency.id, agency.kind, actor)
    return agency


def update_agency(session: Session, agency: Agency, raw: Mapping[str, Any], actor: str) -> Agency:
    """Change the registration fields given in `raw`; the vetting status changes only through change_status."""
    fields = agency_fields.clean(session, raw, partial=True)
    current = {name: getattr(agency, name) for name in agency_fields.FIELDS}
    agency_fields.check_complete({**current, **fields})
    _check_unique(session, fields, agency_id=agency.id)

    for name, value in fields.items():
        setattr(agency, name, value)
    session.add(agency)
    session.flush()
    log.info("Agencies: agency %s fields %s changed by %s", agency.id, ", ".join(sorted(fields)), actor)
    return agency


def change_status(session: Session, agency: Agency, to_status: Any, reason: Any, actor: str, user_id: int | None,
                  now: datetime) -> AgencyStatusChange:
    """Move `agency` to `to_status` if the status machine allows it, and record who, when and why.

    The update is conditional on the status read before, so of two concurrent changes only one is
    applied and the other raises InputError with code "conflict".
    """
    to_status, reason = check_change(agency, to_status, reason)
    from_status = agency.status

    result = session.execute(
        update(Agency).where(Agency.id == agency.id).where(Agency.status == from_status).values(status=to_status)
    )
    if result.rowcount != 1:
        raise conflict_error(agency)

    session.refresh(agency)
    change = AgencyStatusChange(agency_id=agency.id, from_status=from_status, to_status=to_status, reason=reason,
                                actor=actor, user_id=user_id, at=now)
    session.add(change)
    session.flush()
    log.info("Agencies: agency %s status %s -> %s by %s", agency.id, from_status, to_status, actor)
    return change


def conflict_error(agency: Agency) -> InputError:
    """Build the error for a status change that lost a race with another change of the same agency."""
    return InputError("conflict", N_("The status of agency %(name)s changed while this request was handled; "
                                     "reload it and try again."), field="status", status=409, name=agency.name)


def check_change(agency: Agency, to_status: Any, reason: Any) -> tuple[str, str]:
    """Check a status change as change_status does, without writing; return the status and the stripped reason."""
    if not isinstance(to_status, str) or to_status not in STATUSES:
        raise unknown_value("status", to_status, list(STATUSES))

    if not isinstance(reason, str) or not reason.strip():
        raise InputError("reason_required", N_("A reason is required to change the status of an agency."),
                         field="reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."), field="reason",
                         limit=MAX_REASON_LENGTH)

    allowed = STATUS_TRANSITIONS[agency.status]
    if to_status not in allowed:
        raise InputError("invalid_transition",
                         N_("Agency %(name)s cannot go from %(from_status)s to %(to_status)s; allowed: %(allowed)s."),
                         field="status", status=409, name=agency.name, from_status=agency.status,
                         to_status=to_status, allowed=", ".join(allowed) or "-")
    return to_status, reason


def _check_unique(session: Session, fields: Mapping[str, Any], agency_id: int | None) -> None:
    """Reject a name or credit code that another agency has, before the unique index would."""
    checks = (
        ("name", Agency.name, N_("An agency named %(value)s is already registered.")),
        ("credit_code", Agency.credit_code, N_("Another agency already has the credit code %(value)s.")),
    )
    for field, column, template in checks:
        value = fields.get(field)
        if value is None:
            continue
        query = select(Agency.id).where(column == value)
        if agency_id is not None:
            query = query.where(Agency.id != agency_id)
        if session.exec(query).first() is not None:
            raise InputError("already_exists", template, field=field, status=409, value=value)


def find_agency(session: Session, name_or_id: str | int) -> Agency | None:
    """Return the agency with this id (digits) or exact name, or None."""
    text = str(name_or_id).strip()
    if text.isdigit():
        found = session.get(Agency, int(text))
        if found is not None:
            return found
    return session.exec(select(Agency).where(Agency.name == text)).first()


def history(session: Session, agency_id: int) -> list[tuple[AgencyStatusChange, str | None]]:
    """Return the status changes of an agency, oldest first, each with the username of the staff member."""
    rows = session.exec(
        select(AgencyStatusChange, User.username)
        .join(User, User.id == AgencyStatusChange.user_id, isouter=True)
        .where(AgencyStatusChange.agency_id == agency_id)
        .order_by(AgencyStatusChange.at, AgencyStatusChange.id)
    ).all()
    return [(change, username) for change, username in rows]


def document_expiries(agency: Agency) -> dict[str, date | None]:
    """Return the expiry date of each document, keyed like DOCUMENTS. None means it does not expire."""
    return {"filing": agency.filing_expires_on, "licence": agency.licence_expires_on}


def expired_documents(agency: Agency, today: date) -> list[str]:
    """Return the documents that are no longer valid on `today`. A document stops counting on its expiry date."""
    return [name for name, expires_on in document_expiries(agency).items()
            if expires_on is not None and expires_on <= today]


def on_duty(agency: Agency, local_now: datetime) -> bool:
    """Return whether `local_now`, wall-clock time in the hotline's time zone, is inside the agency's duty hours.

    A window whose end is earlier than its start runs past midnight ("20:00-08:00"). An agency without duty
    hours counts as on duty, because its hours are unknown, not known to be closed.
    """
    if not agency.duty_hours:
        return True
    start_text, _, end_text = agency.duty_hours.partition("-")
    start, end = _minute_of_day(start_text), _minute_of_day(end_text)
    minute = local_now.hour * 60 + local_now.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def duty_ends_at(agency: Agency, local_now: datetime) -> datetime | None:
    """Return when the duty window that contains `local_now` ends, in the same time zone.

    None when the agency has no duty hours, is on duty round the clock (00:00-24:00) or is off duty at
    `local_now`.
    """
    if not agency.duty_hours or not on_duty(agency, local_now):
        return None
    start_text, _, end_text = agency.duty_hours.partition("-")
    start, end = _minute_of_day(start_text), _minute_of_day(end_text)
    if (start, end) == (0, MINUTES_PER_DAY):
        return None
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    # A window past midnight, entered before midnight, ends on the next day.
    next_day = start > end and local_now.hour * 60 + local_now.minute >= start
    return midnight + timedelta(days=1 if next_day else 0, minutes=end)


def _minute_of_day(text: str) -> int:
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes)


def may_receive_offers(agency: Agency, today: date, status: str | None = None) -> bool:
    """Return whether status and documents allow offers on `today`. Dispatch checks capacity and towns itself.

    A given `status` is judged in place of the agency's own, to tell what a status change would do.
    """
    status = agency.status if status is None else status
    return status in DISPATCHABLE_STATUSES and not expired_documents(agency, today)


def out_of_dispatch_reason(agency: Agency, today: date) -> str | None:
    """Return why `agency` may not receive offers on `today`, in Chinese for SMS and ticket events, or None.

    The text names the status first, then each expired document with its expiry date.
    """
    reasons = []
    if agency.status not in DISPATCHABLE_STATUSES:
        reasons.append(OUT_OF_DISPATCH_STATUSES[agency.status])
    expiries = document_expiries(agency)
    for document in expired_documents(agency, today):
        reasons.append(f"{DOCUMENTS[document][0]}已于 {expiries[document].isoformat()} 到期")
    return "，".join(reasons) or None
