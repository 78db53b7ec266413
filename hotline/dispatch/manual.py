"""Dispatch by an operator: offer a ticket to a chosen agency, cancel an offer, or dispatch it again.

Each action needs a reason, is one or more ticket events, and runs inside the caller's transaction. An
operator may offer a ticket to an agency that declined it before or is at capacity: the operator has
spoken to the agency, and the offer's reason records that the usual rules were set aside.

Each action first locks the ticket's row, so two actions on one ticket run one after the other. A caller
may also pass the dispatch state it acted on (hotline.dispatch.state). When the ticket's newest offer has
changed since, the action raises DispatchChanged and changes nothing, so a double-clicked "dispatch again"
makes one new offer instead of an offer, its withdrawal and a second offer.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, select

from hotline.agencies import DISPATCHABLE_STATUSES, expired_documents
from hotline.clock import local
from hotline.dispatch import registry, state
from hotline.dispatch.offers import make_offer, offer_to_next_target
from hotline.events import record_event
from hotline.models import Agency, Offer, SlaClock, Ticket
from hotline.outbox import add_message
from hotline.tickets import TransitionError, lock_ticket, set_status
from hotline.validation import N_
from hotline.vocabulary import FINAL_STATUSES

log = logging.getLogger("hotline.dispatch")

MANUAL = "manual"
LIVE_STATES = ("pending", "accepted")


def dispatch_by_hand(session: Session, runtime, ticket: Ticket, agency_id: int, actor: str, reason: str | None,
                     now: datetime, expected_state: str | None = None) -> Offer:
    """Offer `ticket` to the agency an operator chose, with the usual offer deadline."""
    _lock_and_check(session, runtime, ticket, expected_state)
    reason = _required_reason(reason)
    _require_dispatchable(ticket)
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise TransitionError(N_("Agency %(agency_id)s not found."), code="not_found", field="agency_id",
                              agency_id=agency_id)
    today = local(now, runtime.settings.timezone).date()
    if agency.status not in DISPATCHABLE_STATUSES or expired_documents(agency, today):
        raise TransitionError(N_("Agency %(agency)s may not take offers: it is not approved or its documents "
                                 "have expired."), code="agency_not_eligible", field="agency_id", agency=agency.name)
    live = _offers(session, ticket, LIVE_STATES)
    if live:
        raise TransitionError(N_("Ticket %(number)s already has a live offer (code %(offer_code)s); cancel it first."),
                              code="offer_live", field="agency_id", number=ticket.number, offer_code=live[0].code)

    text = f"人工派单：{reason}"
    overridden = _rules_set_aside(session, runtime, ticket, agency)
    if overridden:
        text += f"（话务员指定，未按常规：{'，'.join(overridden)}）"
    attempt = _attempts(session, ticket) + 1
    timeout = runtime.component("dispatch").offer_timeout_seconds
    return make_offer(session, runtime, ticket, agency, attempt, now, target_id=MANUAL, timeout_seconds=timeout,
                      reason=text, actor=actor)


def cancel_offer(session: Session, runtime, ticket: Ticket, attempt: int, actor: str, reason: str | None,
                 now: datetime, expected_state: str | None = None) -> Offer:
    """Cancel a pending or accepted offer and hand the ticket to the operators (in_progress).

    The agency is notified by SMS. An accepted offer also clears the ticket's agency and stops the on_site
    clock, because that agency is no longer coming.
    """
    _lock_and_check(session, runtime, ticket, expected_state)
    reason = _required_reason(reason)
    offer = session.exec(select(Offer).where(Offer.ticket_id == ticket.id, Offer.attempt == attempt)).first()
    if offer is None:
        raise TransitionError(N_("Offer %(attempt)s of ticket %(number)s not found."), code="not_found",
                              field="attempt", attempt=attempt, number=ticket.number)
    if offer.state not in LIVE_STATES:
        raise TransitionError(N_("Offer %(offer_code)s is no longer live and cannot be cancelled."),
                              code="invalid_transition", field="attempt", offer_code=offer.code)

    was_accepted = offer.state == "accepted"
    _cancel(session, ticket, offer, actor, reason, now)
    _stop_agency_clocks(session, ticket, ["dispatch_accept", "on_site"] if was_accepted else ["dispatch_accept"])
    if was_accepted:
        ticket.agency_id = None
        session.add(ticket)
    set_status(session, runtime, ticket, "in_progress", actor, reason, now)
    return offer


def redispatch(session: Session, runtime, ticket: Ticket, actor: str, reason: str | None, now: datetime,
               include_tried: bool = False, expected_state: str | None = None) -> Offer | None:
    """Withdraw any pending offer and dispatch the ticket again through the targets.

    Agencies that declined or let an offer time out are left out unless `include_tried`. Return the
    new offer, or None when the ticket is held or escalated.
    """
    _lock_and_check(session, runtime, ticket, expected_state)
    reason = _required_reason(reason)
    _require_dispatchable(ticket)
    if _offers(session, ticket, ("accepted",)):
        raise TransitionError(N_("An agency has accepted ticket %(number)s; cancel its offer first."),
                              code="offer_live", field=None, number=ticket.number)

    offers = _offers(session, ticket, None)
    for offer in offers:
        if offer.state == "pending":
            _cancel(session, ticket, offer, actor, reason, now)
    ticket.tags = [tag for tag in ticket.tags or [] if tag not in ("dispatch_escalated", "dispatch_held")]
    session.add(ticket)
    record_event(session, ticket, "redispatch", actor=actor, reason=reason, at=now,
                 data={"include_tried": include_tried})
    set_status(session, runtime, ticket, "dispatching", actor, reason, now)

    exclude = set() if include_tried else {offer.agency_id for offer in offers}
    log.info("Dispatch: ticket %s dispatched again by %s (include_tried=%s)", ticket.number, actor, include_tried)
    return offer_to_next_target(session, runtime, ticket, len(offers) + 1, exclude, now)


def _lock_and_check(session: Session, runtime, ticket: Ticket, expected_state: str | None) -> None:
    """Lock the ticket's row, so actions on one ticket run one at a time, then check the expected state."""
    lock_ticket(session, ticket)
    state.check_expected(session, runtime, ticket, expected_state)


def _rules_set_aside(session: Session, runtime, ticket: Ticket, agency: Agency) -> list[str]:
    """Word each dispatch rule that an offer by hand to `agency` sets aside, for the offer's reason."""
    needed = set(ticket.needs or []) & runtime.component("dispatch").on_site_needs
    jobs = registry.active_jobs_by_agency(session).get(agency.id, 0)
    tried = session.exec(select(Offer.id).where(Offer.ticket_id == ticket.id, Offer.agency_id == agency.id)).first()
    set_aside = []
    if not registry.serves_town(agency, ticket.town_code):
        set_aside.append("不在该机构服务街镇内")
    if not needed <= set(agency.services or []):
        set_aside.append("该机构不提供所需服务")
    if jobs >= agency.capacity:
        set_aside.append(f"在岗任务 {jobs}/{agency.capacity} 已满额")
    if tried is not None:
        set_aside.append("此前已派过此单")
    return set_aside


def _cancel(session: Session, ticket: Ticket, offer: Offer, actor: str, reason: str, now: datetime) -> None:
    offer.state = "cancelled"
    offer.responded_at = now
    offer.response_reason = reason
    session.add(offer)
    agency = session.get(Agency, offer.agency_id)
    record_event(session, ticket, "offer_cancelled", actor=actor, from_value=agency.name, reason=reason, at=now,
                 data={"offer_id": offer.id, "attempt": offer.attempt})
    add_message(session, "sms", agency.contact_phone,
                f"【59200496】派单 {offer.code}（工单 {ticket.number}）已撤销，无需再处理。原因：{reason}",
                idempotency_key=f"offer:{offer.id}:cancelled", ticket_id=ticket.id)
    log.info("Dispatch: offer %s of ticket %s cancelled by %s", offer.id, ticket.number, actor)


def _stop_agency_clocks(session: Session, ticket: Ticket, targets: list[str]) -> None:
    clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id)
                          .where(SlaClock.target.in_(targets))).all()
    for clock in clocks:
        if clock.state in ("running", "paused"):
            clock.state = "cancelled"
            session.add(clock)


def _offers(session: Session, ticket: Ticket, states: tuple[str, ...] | None) -> list[Offer]:
    query = select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt)
    if states is not None:
        query = query.where(Offer.state.in_(states))
    return list(session.exec(query).all())


def _attempts(session: Session, ticket: Ticket) -> int:
    return len(_offers(session, ticket, None))


def _require_dispatchable(ticket: Ticket) -> None:
    if ticket.category != "agency_service":
        raise TransitionError(N_("Only agency-service tickets are dispatched; change the category first."),
                              code="not_dispatchable", field=None)
    if ticket.status in FINAL_STATUSES:
        raise TransitionError(N_("Ticket %(number)s is finished and cannot be dispatched."),
                              code="invalid_transition", field=None, number=ticket.number)


def _required_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise TransitionError(N_("A reason is required."), code="reason_required", field="reason")
    return text[:300]
