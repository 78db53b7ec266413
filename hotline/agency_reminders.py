"""SMS reminders to the admins before an agency's filing (备案) or business licence expires.

A daily job writes one outbox message per admin, agency, document, expiry date and threshold. The
idempotency key contains all five, so running the job twice sends one message. A renewed document (a new
expiry date) gets reminders of its own. The job catches up: a reminder missed on its day is sent on the
next run while the document is still inside the threshold, and only the closest threshold is sent.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlmodel import Session, select

from hotline.agencies import DOCUMENTS, document_expiries
from hotline.clock import local
from hotline.models import Agency, User
from hotline.outbox import add_message

log = logging.getLogger("hotline.agency_reminders")

# Days before expiry at which the admins are reminded.
THRESHOLDS_DAYS = (30, 7)
CHANNEL = "sms"


def send_expiry_reminders(runtime, now: datetime) -> int:
    """Queue the reminders due on the local day of `now`; return how many new messages were written."""
    today = local(now, runtime.settings.timezone).date()
    with runtime.transaction() as session:
        admins = admin_phones(session)
        if not admins:
            log.warning("Agency reminders: no active admin has a phone number; nothing sent for %s", today)
            return 0

        written = 0
        for agency in session.exec(select(Agency).where(Agency.status != "revoked").order_by(Agency.id)).all():
            written += _remind_agency(session, agency, admins, today)

    if written:
        log.info("Agency reminders: queued %s message(s) for %s", written, today)
    return written


def due_threshold(expires_on: date | None, today: date) -> int | None:
    """Return the smallest threshold that `today` is within before `expires_on`, or None when none is due.

    An expired document (expiry date today or earlier) gets none, because it is already out of dispatch.
    """
    if expires_on is None:
        return None
    days_left = (expires_on - today).days
    reached = [threshold for threshold in THRESHOLDS_DAYS if 0 < days_left <= threshold]
    return min(reached) if reached else None


def admin_phones(session: Session) -> list[tuple[int, str]]:
    """Return (user id, phone) of every active admin with a phone number."""
    rows = session.exec(
        select(User.id, User.phone).where(User.role == "admin").where(User.active.is_(True))
        .where(User.phone.is_not(None)).order_by(User.id)
    ).all()
    return [(user_id, phone) for user_id, phone in rows if phone]


def _remind_agency(session: Session, agency: Agency, admins: list[tuple[int, str]], today: date) -> int:
    written = 0
    for document, expires_on in document_expiries(agency).items():
        threshold = due_threshold(expires_on, today)
        if threshold is None:
            continue

        body = reminder_text(agency, document, expires_on, (expires_on - today).days)
        for user_id, phone in admins:
            key = f"agency-expiry:{agency.id}:{document}:{expires_on.isoformat()}:{threshold}d:user:{user_id}"
            if add_message(session, CHANNEL, phone, body, idempotency_key=key) is not None:
                written += 1
                log.info("Agency reminders: agency %s %s expires %s, %s-day reminder to user %s", agency.id,
                         document, expires_on, threshold, user_id)
    return written


def reminder_text(agency: Agency, document: str, expires_on: date, days_left: int) -> str:
    """Write the SMS in Chinese: which agency, which document, when it expires and what happens then."""
    label = DOCUMENTS[document][0]
    number = agency.filing_number if document == "filing" else agency.credit_code
    numbered = f"（{number}）" if number else ""
    return (f"【59200496】{agency.name}的{label}{numbered}将于 {expires_on.isoformat()} 到期，还剩 {days_left} 天；"
            f"到期当日起不再向其派单。请督促续期，并用 hotline agencies update 登记新的有效期。")
