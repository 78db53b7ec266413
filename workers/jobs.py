"""RQ job entry points. Thin: each takes ids, finds the runtime and calls the domain.

RQ delivers at least once, and the in-process queue calls these directly, so each one is safe to run
twice; the domain functions they call explain how.
"""

from __future__ import annotations

import logging

from hotline import outbox
from hotline.agency_reminders import send_expiry_reminders
from hotline.clock import now
from hotline.delivery import deliver_message as _deliver
from hotline.dispatch import offers, withdrawals
from hotline.runtime import current
from hotline.sla.sweep import sweep_breaches
from hotline.store import refresh_planner_statistics

log = logging.getLogger("hotline.jobs")


def dispatch_ticket(ticket_id: int) -> None:
    offers.dispatch_ticket(current(), ticket_id, now())


def deliver_message(message_id: int) -> None:
    _deliver(current(), message_id, now())


def sweep_sla() -> int:
    return sweep_breaches(current(), now())


def sweep_offers() -> int:
    """Withdraw the offers of agencies out of dispatch and time out overdue offers, then dispatch again
    every agency-service ticket left without one."""
    runtime = current()
    instant = now()
    withdrawn = withdrawals.withdraw_ineligible_offers(runtime, instant)
    expired = offers.expire_offers(runtime, instant)
    for ticket_id in offers.stalled_ticket_ids(runtime):
        runtime.queue.enqueue("dispatch_ticket", ticket_id)
    return withdrawn + expired


def sweep_outbox() -> int:
    """Re-enqueue messages that are due again or whose sender died; the transactional outbox's safety net."""
    runtime = current()
    instant = now()
    with runtime.transaction() as session:
        outbox.release_expired_leases(session, instant)
        ids = outbox.due_message_ids(session, instant)
    for message_id in ids:
        runtime.queue.enqueue("deliver_message", message_id)
    if ids:
        log.info("Jobs: re-enqueued %s due outbox messages", len(ids))
    return len(ids)


def refresh_statistics() -> int:
    """Refresh SQLite's planner statistics; return 1 when they were refreshed, 0 on PostgreSQL."""
    return int(refresh_planner_statistics(current().engine))


def remind_agency_expiry() -> int:
    """Queue the admins' reminders of agency filings and licences that expire within 30 or 7 days."""
    return send_expiry_reminders(current(), now())
