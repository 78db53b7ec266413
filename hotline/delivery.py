"""Deliver outbox messages: SMS through the SMS backend (supervisor notices to the on-duty supervisors)
and webhook deliveries by signed HTTP POST."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import select

from hotline import outbox, webhooks
from hotline.models import OutboxMessage, User
from hotline.telephony.sms import SmsSendError

log = logging.getLogger("hotline.delivery")


def deliver_message(runtime, message_id: int, now: datetime) -> bool:
    """Send one message if it is due and nobody else is sending it; return True when it was sent.

    1. Claim it with a conditional update (pending -> sending, with a lease), so one worker sends it.
    2. Send outside any transaction.
    3. Record the outcome: sent, or back to pending with back-off, or failed after the last attempt.
    A worker that dies between 2 and 3 leaves a lease that runs out, and the message is sent again:
    delivery is at least once, because SMS providers take no idempotency key.
    """
    with runtime.transaction() as session:
        if not outbox.claim_message(session, message_id, now):
            return False
        message = session.get(OutboxMessage, message_id)
        if message.channel == webhooks.CHANNEL:
            target = webhooks.find_target(session, message)
        else:
            recipients = _recipients(session, message)

    if message.channel == webhooks.CHANNEL:
        return _post_webhook(runtime, message, target, now)
    try:
        provider_ids = [runtime.component("sms").send(to, message.body) for to in recipients]
    except SmsSendError as error:
        with runtime.transaction() as session:
            message = session.get(OutboxMessage, message_id)
            if not error.retryable:
                message.attempts = outbox.MAX_ATTEMPTS
            outbox.mark_failed_attempt(session, message, str(error), now)
        return False

    with runtime.transaction() as session:
        message = session.get(OutboxMessage, message_id)
        outbox.mark_sent(session, message, ",".join(provider_ids)[:64] or None, now)
    log.info("Delivery: message %s (%s) sent to %s recipient(s)", message_id, message.channel, len(recipients))
    return True


def _post_webhook(runtime, message: OutboxMessage, target: webhooks.Target | None, now: datetime) -> bool:
    """POST a claimed webhook delivery and record the outcome.

    A delivery whose webhook is gone, or whose URL now leads to an address webhooks may not reach, fails
    at once without retries.
    """
    try:
        if target is None:
            raise webhooks.WebhookError("the webhook was removed or its token revoked")
        status = webhooks.post(target, message.body, now, runtime.settings.webhook_allow_loopback)
    except webhooks.WebhookError as error:
        rejected = isinstance(error, webhooks.DestinationRejected)
        if rejected:
            log.warning("Delivery: webhook delivery %s to %s rejected by the SSRF guard: %s (%s)", message.id,
                        message.recipient, error, error.detail)
        with runtime.transaction() as session:
            stored = session.get(OutboxMessage, message.id)
            webhooks.record_failed_attempt(session, stored, str(error), now,
                                           retryable=target is not None and not rejected)
        return False

    with runtime.transaction() as session:
        outbox.mark_sent(session, session.get(OutboxMessage, message.id), f"HTTP {status}", now)
    log.info("Delivery: webhook delivery %s sent to webhook %s", message.id, message.recipient)
    return True


def _recipients(session, message: OutboxMessage) -> list[str]:
    if message.channel != outbox.SUPERVISOR:
        return [message.recipient]
    phones = session.exec(
        select(User.phone).where(User.role == "supervisor").where(User.on_duty.is_(True))
        .where(User.active.is_(True)).where(User.phone.is_not(None))
    ).all()
    if not phones:
        log.warning("Delivery: no on-duty supervisor with a phone for message %s; it stays visible in the outbox",
                    message.id)
    return list(phones)
