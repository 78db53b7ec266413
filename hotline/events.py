"""Ticket events: one row for every change, with who made it, from what, to what and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from hotline.clock import now as clock_now
from hotline.models import Ticket, TicketEvent
from hotline.rows import new_row

SYSTEM = "system"


def record_event(
    session: Session,
    ticket: Ticket,
    kind: str,
    actor: str = SYSTEM,
    from_value: Any = None,
    to_value: Any = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> TicketEvent:
    """Add an event row to the session; it commits with the change it describes."""
    event = new_event(ticket, kind, actor, from_value, to_value, reason, data, at)
    session.add(event)
    return event


def new_event(
    ticket: Ticket,
    kind: str,
    actor: str = SYSTEM,
    from_value: Any = None,
    to_value: Any = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> TicketEvent:
    """Build an event of `ticket` without adding it to a session, for a ticket that is not inserted yet."""
    return new_row(
        TicketEvent,
        ticket_id=ticket.id,
        at=at or clock_now(),
        actor=actor,
        kind=kind,
        from_value=None if from_value is None else str(from_value),
        to_value=None if to_value is None else str(to_value),
        reason=reason,
        data=data,
    )
