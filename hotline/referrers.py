"""Referrers: advisors and community workers who file referrals through the portal and follow them.

A referrer's account role is the referral source it files under. A portal referral has no API token and
the external id `portal-<user id>-<form token>`, so an account's referrals are the token-less referrals
of its source whose external id carries its prefix. Referrers learn of status changes by SMS and read
the notes operators mark for them; neither shows the resident's phone number.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import datetime

import phonenumbers
from sqlmodel import Session, select

from hotline import phones
from hotline.events import record_event
from hotline.models import Agency, Offer, Referral, Ticket, TicketEvent
from hotline.outbox import add_message
from hotline.validation import N_, TemplatedError

log = logging.getLogger("hotline.referrers")

REFERRER_ROLES = ("elderly_advisor", "assistance_advisor", "community_worker")
PORTAL_PREFIX = "portal-"
FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
NOTE_MAX = 500
NOTE = "note"
REFERRER_NOTE = "referrer_note"
SMS_CHANNEL = "sms"

# Statuses in the words a referrer reads on the portal and in the SMS; (Chinese, English) like vocabulary.
REFERRER_STATUSES = {
    "new": ("已收到，等待受理", "Received, waiting to be taken up"),
    "in_progress": ("话务员正在办理", "An operator is working on it"),
    "dispatching": ("正在联系服务机构", "Looking for a service agency"),
    "dispatched": ("服务机构已接单", "A service agency has taken it on"),
    "waiting": ("暂停办理，等待回复", "On hold, waiting for a reply"),
    "resolved": ("已办结", "Done"),
    "closed": ("已办结并归档", "Done and closed"),
    "cancelled": ("已撤销", "Cancelled"),
}


class InvalidReferrerPhone(TemplatedError, ValueError):
    """A referrer's phone that cannot receive the status SMS."""


def is_referrer(role: str | None) -> bool:
    return role in REFERRER_ROLES


def referrer_mobile(text: str) -> str:
    """Normalise a referrer's phone to E.164; raise InvalidReferrerPhone unless it is a mobile number."""
    try:
        number = phones.normalise(text).e164
    except phones.InvalidPhoneNumber as error:
        raise InvalidReferrerPhone(N_("%(phone)s is not a valid phone number; give a mainland mobile number such "
                                      "as 13812345678."), phone=text) from error
    if phonenumbers.number_type(phonenumbers.parse(number)) != phonenumbers.PhoneNumberType.MOBILE:
        raise InvalidReferrerPhone(N_("%(phone)s is not a mobile number, so it cannot receive SMS; give a mainland "
                                      "mobile number such as 13812345678."), phone=text)
    return number


# --- portal referrals ------------------------------------------------------------------------------


def new_form_token() -> str:
    """Draw a random token for one portal form; 16 bytes give the 22 characters FORM_TOKEN accepts."""
    return secrets.token_urlsafe(16)


def portal_external_id(user_id: int, form_token: str) -> str:
    """Return the external id of the referral filed with `form_token`; a resubmitted form gives the same one."""
    if not FORM_TOKEN.match(form_token or ""):
        raise ValueError("form token must be 22 URL-safe characters")
    return f"{owner_prefix(user_id)}{form_token}"


def owner_prefix(user_id: int) -> str:
    return f"{PORTAL_PREFIX}{user_id}-"


def own_referrals(session: Session, user_id: int, role: str, limit: int) -> list[tuple[Referral, Ticket]]:
    """Return the account's portal referrals with their tickets, newest first."""
    rows = session.exec(
        select(Referral, Ticket).join(Ticket, Ticket.id == Referral.ticket_id)
        .where(Referral.source == role).where(Referral.token_id.is_(None))
        .where(Referral.external_id.startswith(owner_prefix(user_id), autoescape=True))
        .order_by(Referral.received_at.desc(), Referral.id.desc()).limit(limit)
    ).all()
    return [(referral, ticket) for referral, ticket in rows]


def is_portal_referral(referral: Referral) -> bool:
    return referral.token_id is None and referral.external_id.startswith(PORTAL_PREFIX)


# --- notes -----------------------------------------------------------------------------------------


def add_note(session: Session, ticket: Ticket, text: str, visible_to_referrer: bool, actor: str,
             now: datetime) -> TicketEvent:
    """Record an operator's note as a ticket event; a note visible to the referrer shows on the portal."""
    kind = REFERRER_NOTE if visible_to_referrer else NOTE
    return record_event(session, ticket, kind, actor=actor, reason=text[:NOTE_MAX], at=now)


def latest_referrer_notes(session: Session, ticket_ids: list[int]) -> dict[int, TicketEvent]:
    """Return the newest note for the referrer of each ticket that has one."""
    if not ticket_ids:
        return {}
    notes: dict[int, TicketEvent] = {}
    for event in session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id.in_(ticket_ids)).where(TicketEvent.kind == REFERRER_NOTE)
        .order_by(TicketEvent.at, TicketEvent.id)
    ).all():
        notes[event.ticket_id] = event
    return notes


def accepted_agencies(session: Session, ticket_ids: list[int]) -> dict[int, str]:
    """Return the name of the agency that accepted each ticket's offer, the latest one if several did."""
    if not ticket_ids:
        return {}
    rows = session.exec(
        select(Offer.ticket_id, Agency.name).join(Agency, Agency.id == Offer.agency_id)
        .where(Offer.ticket_id.in_(ticket_ids)).where(Offer.state == "accepted").order_by(Offer.attempt)
    ).all()
    return {ticket_id: name for ticket_id, name in rows}


# --- status SMS ------------------------------------------------------------------------------------


def status_sms_text(number: str, status: str) -> str:
    """Word the status SMS in Chinese: the ticket number and the status in plain words, nothing about the resident."""
    words = REFERRER_STATUSES.get(status, (status,))[0]
    return f"【59200496】您转介的工单 {number}：{words}。详情请登录转介门户查看。"


def notify_status_change(session: Session, ticket: Ticket, status: str) -> None:
    """Queue the status SMS to the referrer of a portal referral; other tickets get none.

    The idempotency key is the ticket and the status, so a referrer hears of each status once, however
    often the ticket moves back into it.
    """
    if not is_referrer(ticket.source):
        return
    referral = session.exec(select(Referral).where(Referral.ticket_id == ticket.id)).first()
    if referral is None or not is_portal_referral(referral) or not referral.referrer_phone:
        return
    key = f"referrer-status:{ticket.id}:{status}"
    if add_message(session, SMS_CHANNEL, referral.referrer_phone, status_sms_text(ticket.number, status),
                   idempotency_key=key, ticket_id=ticket.id) is not None:
        log.info("Referrers: ticket %s status %s SMS queued for referral %s", ticket.number, status, referral.id)
