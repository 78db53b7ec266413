"""The breach sweep: flag running clocks whose deadline has passed and tell the supervisor once.

The query reads the partial index over running, unbreached clocks, so its cost grows with what is
overdue, not with what is open. Several schedulers or processes may sweep at once safely.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, select

from hotline.clock import isoformat
from hotline.clock import now as clock_now
from hotline.events import SYSTEM, record_event
from hotline.models import SlaClock, Ticket
from hotline.sla.clocks import add_breach_notice

log = logging.getLogger("hotline.sla")


def sweep_breaches(runtime, now: datetime | None = None, limit: int = 500) -> int:
    """Flag up to `limit` overdue running clocks, oldest due first, and return how many this call flagged.

    Each clock is handled in its own transaction:
      1. claim it with a conditional UPDATE that sets breached_at = due_at only while breached_at is
         still NULL, and go on only if that UPDATE changed one row (another sweep may have won);
      2. record an `sla_breached` ticket event;
      3. queue the supervisor notice, keyed `sla-breach:<clock id>` so it exists once.
    A clock that fails is logged with its id and rolled back alone, and the next sweep retries it.
    """
    now = now or clock_now()
    with runtime.transaction() as session:
        clock_ids = list(session.exec(
            select(SlaClock.id)
            .where(SlaClock.state == "running")
            .where(SlaClock.breached_at.is_(None))
            .where(SlaClock.due_at <= now)
            .order_by(SlaClock.due_at)
            .limit(limit)
        ))

    flagged = 0
    for clock_id in clock_ids:
        try:
            with runtime.transaction() as session:
                if _flag_breach(session, clock_id, now):
                    flagged += 1
        except Exception:
            log.exception("SLA sweep: clock %s could not be flagged; skipped until the next sweep", clock_id)
    if clock_ids:
        log.info("SLA sweep: %s of %s overdue clocks flagged at %s", flagged, len(clock_ids), isoformat(now))
    return flagged


def _flag_breach(session: Session, clock_id: int, now: datetime) -> bool:
    claimed = session.execute(
        update(SlaClock)
        .where(SlaClock.id == clock_id)
        .where(SlaClock.state == "running")
        .where(SlaClock.breached_at.is_(None))
        .where(SlaClock.due_at <= now)
        .values(breached_at=SlaClock.due_at)
    )
    if claimed.rowcount != 1:
        log.info("SLA sweep: clock %s was already flagged or changed by another process", clock_id)
        return False

    clock = session.get(SlaClock, clock_id)
    ticket = session.get(Ticket, clock.ticket_id)
    record_event(session, ticket, kind="sla_breached", actor=SYSTEM, at=now,
                 data={"target": clock.target, "due_at": isoformat(clock.due_at)})
    add_breach_notice(session, ticket, clock)
    log.warning("SLA sweep: ticket %s clock %s (%s) breached, due %s", ticket.number, clock_id, clock.target,
                isoformat(clock.due_at))
    return True
