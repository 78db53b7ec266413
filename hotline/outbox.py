"""Transactional outbox: side effects are rows written in the commit that causes them.

A message is delivered by a job enqueued after that commit; the scheduler re-enqueues any message
still pending past its next attempt time, so losing Redis or a worker loses no message.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, select

from hotline.models import OutboxMessage

log = logging.getLogger("hotline.outbox")

MAX_ATTEMPTS = 8
SUPERVISOR = "supervisor"


def add_message(
    session: Session,
    channel: str,
    recipient: str,
    body: str,
    idempotency_key: str,
    ticket_id: int | None = None,
) -> OutboxMessage | None:
    """Queue a message unless one with the same idempotency key exists; return the new row or None."""
    existing = session.exec(
        select(OutboxMessage.id).where(OutboxMessage.idempotency_key == idempotency_key)
    ).first()
    if existing is not None:
        return None

    message = OutboxMessage(
        channel=channel, recipient=recipient, body=body, idempotency_key=idempotency_key, ticket_id=ticket_id
    )
    session.add(message)
    session.flush()
    schedule_job(session, "deliver_message", message.id)
    return message


def schedule_job(session: Session, name: str, *args) -> None:
    """Ask for job `name` of `workers.jobs` to run with `args` once this session commits."""
    session.info.setdefault("jobs_after_commit", []).append((name, args))


def claim_message(session: Session, message_id: int, now: datetime, lease_seconds: int = 60) -> bool:
    """Take a pending message for delivery; a conditional update makes two workers never both take it."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .where(OutboxMessage.status == "pending")
        .where(OutboxMessage.next_attempt_at <= now)
        .values(status="sending", next_attempt_at=now + timedelta(seconds=lease_seconds),
                attempts=OutboxMessage.attempts + 1)
    )
    return result.rowcount == 1


def mark_sent(session: Session, message: OutboxMessage, provider_id: str | None, now: datetime) -> None:
    message.status = "sent"
    message.provider_id = provider_id
    message.sent_at = now
    message.last_error = None
    session.add(message)


def mark_failed_attempt(session: Session, message: OutboxMessage, error: str, now: datetime) -> None:
    """Put a message back for a later attempt with exponential back-off, or give up after MAX_ATTEMPTS."""
    message.last_error = error[:500]
    if message.attempts >= MAX_ATTEMPTS:
        message.status = "failed"
        log.error("Outbox: message %s failed for good after %s attempts: %s", message.id, message.attempts, error)
    else:
        message.status = "pending"
        message.next_attempt_at = now + timedelta(seconds=min(30 * 2 ** (message.attempts - 1), 3600))
        log.warning("Outbox: message %s attempt %s failed, retry at %s: %s",
                    message.id, message.attempts, message.next_attempt_at.isoformat(), error)
    session.add(message)


def due_message_ids(session: Session, now: datetime, limit: int = 200) -> list[int]:
    """Ids of messages whose next attempt is due, including sends whose lease ran out (a crashed worker)."""
    rows = session.exec(
        select(OutboxMessage.id)
        .where(OutboxMessage.status.in_(("pending", "sending")))
        .where(OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    )
    return list(rows)


def release_expired_leases(session: Session, now: datetime) -> int:
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == "sending")
        .where(OutboxMessage.next_attempt_at <= now)
        .values(status="pending")
    )
    return result.rowcount
