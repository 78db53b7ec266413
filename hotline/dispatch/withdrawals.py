"""Withdrawing the pending offers of an agency that may no longer take work.

An agency leaves dispatch when a supervisor suspends or revokes it, and when its filing or business
licence expires (from 00:00 of the expiry date in the hotline's time zone). Each of its pending offers is
then cancelled with a ticket event saying why, and the agency is notified by SMS through the outbox. The
ticket goes to its next target at once, because the dispatch_ticket job runs after the commit and leaves
out every agency already offered the ticket. A status change withdraws in the transaction that changes the
status. The offer sweep withdraws the offers of agencies whose documents expired, and of agencies whose
status was changed without change_agency_status.

Offers the agency has already accepted stay, because its staff may be on the way. The status change
lists them so that staff can cancel them by hand (hotline.dispatch.manual.cancel_offer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from hotline import agencies
from hotline.clock import local
from hotline.events import record_event
from hotline.models import Agency, AgencyStatusChange, Offer, Ticket
from hotline.outbox import add_message, schedule_job
from hotline.tickets import lock_ticket
from hotline.vocabulary import OPEN_STATUSES

log = logging.getLogger("hotline.dispatch")

SWEEP_ACTOR = "dispatch"


@dataclass(frozen=True)
class StatusChangeOutcome:
    """A vetting status change with the offers it withdrew and the accepted offers left with the agency."""

    change: AgencyStatusChange
    withdrawn: list[tuple[Offer, Ticket]]
    still_accepted: list[tuple[Offer, Ticket]]


@dataclass(frozen=True)
class StatusChangePreview:
    """The effect of a vetting status change if it were applied now.

    `pending` lists the offers it would withdraw and `still_accepted` the accepted offers it would leave with
    the agency. Both are empty when the agency would still receive offers afterwards.
    """

    from_status: str
    to_status: str
    reason: str
    leaves_dispatch: bool
    pending: list[tuple[Offer, Ticket]]
    still_accepted: list[tuple[Offer, Ticket]]


def preview_status_change(session: Session, runtime, agency: Agency, to_status: Any, reason: Any,
                          now: datetime) -> StatusChangePreview:
    """Check a status change as change_agency_status does, without writing, and list the offers it would affect.

    Raises InputError as agencies.change_status does. Offers can change before the change is applied, so the
    lists may differ from those of the StatusChangeOutcome.
    """
    to_status, reason = agencies.check_change(agency, to_status, reason)
    today = local(now, runtime.settings.timezone).date()
    if agencies.may_receive_offers(agency, today, status=to_status):
        return StatusChangePreview(agency.status, to_status, reason, False, [], [])
    return StatusChangePreview(agency.status, to_status, reason, True, pending_offers(session, agency),
                               accepted_open_offers(session, agency))


def change_agency_status(session: Session, runtime, agency: Agency, to_status: Any, reason: Any, actor: str,
                         user_id: int | None, now: datetime) -> StatusChangeOutcome:
    """Change the vetting status of `agency` as agencies.change_status does, then withdraw its pending
    offers if it may no longer receive offers."""
    change = agencies.change_status(session, agency, to_status, reason, actor, user_id, now)
    today = local(now, runtime.settings.timezone).date()
    if agencies.may_receive_offers(agency, today):
        return StatusChangeOutcome(change, [], [])
    withdrawn = withdraw_pending_offers(session, agency, today, actor, now)
    return StatusChangeOutcome(change, withdrawn, accepted_open_offers(session, agency))


def withdraw_pending_offers(session: Session, agency: Agency, today: date, actor: str,
                            now: datetime) -> list[tuple[Offer, Ticket]]:
    """Cancel the pending offers of `agency` if it may not receive offers on `today`; return them with their tickets.

    The agency is notified of each offer by SMS, and each ticket is dispatched again. Every offer moves out
    of pending with a conditional UPDATE. So an offer that the agency accepts, declines or lets time out at
    the same moment keeps that response and is not withdrawn.
    """
    cause = agencies.out_of_dispatch_reason(agency, today)
    if cause is None:
        return []
    withdrawn = []
    for offer, ticket in pending_offers(session, agency):
        # Locked first, so an operator's action on the ticket never acts on an offer withdrawn meanwhile.
        lock_ticket(session, ticket)
        claimed = session.execute(
            update(Offer).where(Offer.id == offer.id).where(Offer.state == "pending")
            .values(state="cancelled", responded_at=now, response_reason=cause[:300])
        ).rowcount == 1
        session.refresh(offer)
        if not claimed:
            continue
        _record_and_redispatch(session, agency, offer, ticket, cause, today, actor, now)
        withdrawn.append((offer, ticket))
    return withdrawn


def _record_and_redispatch(session: Session, agency: Agency, offer: Offer, ticket: Ticket, cause: str, today: date,
                           actor: str, now: datetime) -> None:
    record_event(session, ticket, "offer_cancelled", actor=actor, from_value=agency.name, at=now,
                 reason=f"{cause}，撤回派单并改派其他机构"[:500],
                 data={"offer_id": offer.id, "attempt": offer.attempt, "agency_status": agency.status,
                       "expired_documents": agencies.expired_documents(agency, today)})
    add_message(session, "sms", agency.contact_phone,
                f"【59200496】派单 {offer.code}（工单 {ticket.number}）已撤回，无需再处理，请勿前往。原因：{cause}。",
                idempotency_key=f"offer:{offer.id}:withdrawn", ticket_id=ticket.id)
    schedule_job(session, "dispatch_ticket", ticket.id)
    log.info("Dispatch: offer %s of ticket %s withdrawn from agency %s (status %s) by %s", offer.id, ticket.number,
             agency.id, agency.status, actor)


def pending_offers(session: Session, agency: Agency) -> list[tuple[Offer, Ticket]]:
    """Return the offers of `agency` that wait for its response, oldest first, each with its ticket."""
    rows = session.exec(
        select(Offer, Ticket).join(Ticket, Ticket.id == Offer.ticket_id).where(Offer.agency_id == agency.id)
        .where(Offer.state == "pending").order_by(Offer.id)
    ).all()
    return [(offer, ticket) for offer, ticket in rows]


def accepted_open_offers(session: Session, agency: Agency) -> list[tuple[Offer, Ticket]]:
    """Return the accepted offers of `agency` on tickets that are still open, oldest first."""
    rows = session.exec(
        select(Offer, Ticket).join(Ticket, Ticket.id == Offer.ticket_id).where(Offer.agency_id == agency.id)
        .where(Offer.state == "accepted").where(Ticket.status.in_(OPEN_STATUSES)).order_by(Offer.id)
    ).all()
    return [(offer, ticket) for offer, ticket in rows]


def withdraw_ineligible_offers(runtime, now: datetime, limit: int = 200) -> int:
    """Withdraw the pending offers of every agency that may not receive offers today; return how many.

    The offer sweep runs this, so an offer sent before midnight is withdrawn at most one sweep after its
    agency's filing or licence expires. Each agency is handled in its own transaction, so one failure
    leaves the others done and the next sweep retries it.
    """
    today = local(now, runtime.settings.timezone).date()
    with runtime.transaction() as session:
        agency_ids = session.exec(select(Offer.agency_id).where(Offer.state == "pending").distinct()
                                  .limit(limit)).all()
        ineligible = [agency.id for agency in session.exec(select(Agency).where(Agency.id.in_(agency_ids))).all()
                      if not agencies.may_receive_offers(agency, today)]

    withdrawn = 0
    for agency_id in ineligible:
        try:
            with runtime.transaction() as session:
                agency = session.get(Agency, agency_id)
                withdrawn += len(withdraw_pending_offers(session, agency, today, SWEEP_ACTOR, now))
        except Exception:
            log.exception("Dispatch: withdrawing the offers of agency %s failed; the next sweep retries it",
                          agency_id)
    return withdrawn
