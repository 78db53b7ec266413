"""JSON shapes of tickets and agencies; every instant carries its offset."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from hotline.clock import isoformat
from hotline.dispatch.state import NO_OFFER, dispatch_state
from hotline.models import Agency, Call, Offer, SlaClock, Ticket, TicketEvent
from hotline.phones import mask
from hotline.rules.explain import ticket_trace_text
from hotline.sla.clocks import clock_view
from hotline.tickets import NewTicket
from hotline.towns import town_names
from hotline.vocabulary import CATEGORIES, STATUSES, label


def ticket_summary(ticket: Ticket, towns: dict[str, str], may_see_phones: bool, language: str) -> dict[str, Any]:
    """Build the fields a queue row needs."""
    reasons = ticket.priority_reasons or []
    text_key = "text_en" if language == "en" else "text_zh"
    return {
        "number": ticket.number,
        "status": ticket.status,
        "status_label": label(STATUSES, ticket.status, language),
        "priority": f"P{ticket.priority}",
        "queue_rank": ticket.queue_rank,
        "priority_reasons": [reason.get(text_key) or reason.get("text_zh") for reason in reasons],
        "category": ticket.category,
        "category_label": label(CATEGORIES, ticket.category, language),
        "channel": ticket.channel,
        "source": ticket.source,
        "needs": ticket.needs or [],
        "flags": ticket.flags or [],
        "tags": ticket.tags or [],
        "town": towns.get(ticket.town_code) if ticket.town_code else None,
        "town_code": ticket.town_code,
        "committee": ticket.committee,
        "caller_phone": ticket.caller_phone if may_see_phones else mask(ticket.caller_phone),
        "caller_phone_ext": ticket.caller_phone_ext if may_see_phones else None,
        "external_id": ticket.external_id,
        "due_at": isoformat(ticket.due_at),
        "created_at": isoformat(ticket.created_at),
        "updated_at": isoformat(ticket.updated_at),
        "assigned_to_id": ticket.assigned_to_id,
        "agency_id": ticket.agency_id,
        "rule_set_version": ticket.rule_set_version,
    }


def ticket_detail(session: Session, ticket: Ticket, may_see_phones: bool, language: str,
                  new_ticket: NewTicket | None = None) -> dict[str, Any]:
    """Build a ticket with its calls, SLA clocks, offers, events and rule trace.

    For a ticket created in the current transaction, `new_ticket` gives its events and clocks, and it
    has no calls or offers yet, so the view reads nothing back from the database.
    """
    if new_ticket is not None:
        return _detail(ticket, town_names(session), may_see_phones, language, call_sids=[],
                       clocks=new_ticket.clocks, offers=[], events=new_ticket.events)

    clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)).all()
    events = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                          .order_by(TicketEvent.at, TicketEvent.id)).all()
    call_sids = session.exec(select(Call.call_sid).where(Call.ticket_id == ticket.id).order_by(Call.started_at)).all()
    return _detail(ticket, town_names(session), may_see_phones, language, call_sids=list(call_sids), clocks=clocks,
                   offers=offer_views(session, ticket.id, staff=may_see_phones), events=events)


def _detail(ticket: Ticket, towns: dict[str, str], may_see_phones: bool, language: str, call_sids: list[str],
            clocks: list[SlaClock], offers: list[dict[str, Any]], events: list[TicketEvent]) -> dict[str, Any]:
    view = ticket_summary(ticket, towns, may_see_phones, language)
    view.update({
        "caller_name": ticket.caller_name if may_see_phones else None,
        "address": ticket.address if may_see_phones else None,
        "note": ticket.note,
        "deceased": ticket.deceased,
        "priority_reasons_detail": ticket.priority_reasons or [],
        "rule_trace": ticket.rule_trace or [],
        "rule_trace_text": ticket_trace_text(ticket, language),
        "call_sids": call_sids,
        "sla": [clock_view(clock) for clock in clocks],
        "offers": offers,
        "dispatch_state": dispatch_state(offers[-1]["attempt"], offers[-1]["state"]) if offers else NO_OFFER,
        "events": [event_view(event) for event in events],
    })
    return view


def offer_views(session: Session, ticket_id: int, staff: bool) -> list[dict[str, Any]]:
    """Offers of a ticket; the reply code is shown to staff only, who may pass it to an agency by phone."""
    rows = session.exec(
        select(Offer, Agency).join(Agency, Agency.id == Offer.agency_id)
        .where(Offer.ticket_id == ticket_id).order_by(Offer.attempt)
    ).all()
    return [
        {
            "agency_id": agency.id,
            "agency_name": agency.name,
            "attempt": offer.attempt,
            "state": offer.state,
            "reason": offer.reason,
            "sent_at": isoformat(offer.sent_at),
            "accept_by": isoformat(offer.accept_by),
            "responded_at": isoformat(offer.responded_at),
            "response_reason": offer.response_reason,
            **({"code": offer.code} if staff else {}),
        }
        for offer, agency in rows
    ]


def event_view(event: TicketEvent) -> dict[str, Any]:
    return {
        "at": isoformat(event.at),
        "actor": event.actor,
        "kind": event.kind,
        "from": event.from_value,
        "to": event.to_value,
        "reason": event.reason,
        "data": event.data,
    }


def agency_view(agency: Agency) -> dict[str, Any]:
    return {
        "id": agency.id,
        "name": agency.name,
        "kind": agency.kind,
        "status": agency.status,
        "towns": agency.towns or [],
        "services": agency.services or [],
        "capacity": agency.capacity,
        "contact_phone": agency.contact_phone,
        "credit_code": agency.credit_code,
        "filing_number": agency.filing_number,
        "licence_expires_on": agency.licence_expires_on.isoformat() if agency.licence_expires_on else None,
        "last_offered_at": isoformat(agency.last_offered_at),
    }

