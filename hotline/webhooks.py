"""Webhooks: each status change of a platform's referrals, POSTed to the URL its token registered.

A change is written to the outbox (channel "webhook") in the commit that makes it, so a delivery is
never lost and never sent for a change that rolled back. Each attempt signs the stored body afresh:

    X-Hotline-Timestamp: <Unix seconds>
    X-Hotline-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the webhook's secret>

A failed attempt is retried with exponential back-off (30 s doubling, at most an hour apart) until 24
hours after the change, and the delivery is then marked failed. Delivery is at least once: a receiver
deduplicates on `event_id`.

The URL's host is resolved at registration and again before every attempt, and each attempt connects to
an address that passed `ssrf_guard`'s check: public addresses only, and loopback where
HOTLINE_WEBHOOK_ALLOW_LOOPBACK allows it. An attempt to a host that fails the check is not retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import requests
from sqlmodel import Session, select

from hotline import outbox, ssrf_guard
from hotline.clock import as_aware_utc, isoformat
from hotline.models import ApiToken, OutboxMessage, Ticket, TicketEvent, Webhook
from hotline.validation import N_, InputError
from hotline.vocabulary import STATUSES, label

log = logging.getLogger("hotline.webhooks")

CHANNEL = "webhook"
EVENT_TYPE = "referral.status_changed"
RETRY_WINDOW = timedelta(hours=24)
FIRST_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 3600
TIMEOUT_SECONDS = 10
URL_MAX = 500
# Delivery states as the API and the CLI show them, by outbox status.
DELIVERY_STATES = {"pending": "pending", "sending": "pending", "sent": "delivered", "failed": "failed"}


class WebhookError(Exception):
    """An attempt that did not get a 2xx answer."""


class DestinationRejected(WebhookError):
    """An attempt not made because the URL's host now resolves to an address webhooks may not reach.

    The message is stored as the delivery's last error, which the platform reads, so it leaves out the
    address: a platform could otherwise learn how the hotline's DNS resolves internal names. `detail`
    names the address, for the log.
    """

    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Target:
    url: str
    secret: str


@dataclass(frozen=True)
class CheckedUrl:
    """A webhook URL that passed `check_url`. Its host is checked again before every delivery."""

    url: str


# --- registration ----------------------------------------------------------------------------------


def register(session: Session, token: ApiToken, checked: CheckedUrl, now: datetime) -> tuple[Webhook, bool, str]:
    """Register or replace the webhook of a source token; return it, whether it is new, and its new secret.

    Every registration issues a new secret, so a platform that lost its secret registers again.
    Deliveries still pending are signed with the new secret from their next attempt on.
    """
    if token.source is None:
        raise ValueError("only a referral-source token may register a webhook")
    url = checked.url
    secret = "whsec_" + secrets.token_hex(24)
    webhook = find_for_token(session, token.id)
    created = webhook is None
    if created:
        webhook = Webhook(token_id=token.id, source=token.source, url=url, secret=secret, created_at=now,
                          updated_at=now)
    else:
        webhook.url, webhook.secret, webhook.updated_at = url, secret, now
    session.add(webhook)
    session.flush()
    log.info("Webhooks: token %s (%s) registered webhook %s", token.prefix, token.source, webhook.id)
    return webhook, created, secret


def check_url(url: str, allow_loopback: bool = False) -> CheckedUrl:
    """Return the URL stripped, or raise InputError unless webhooks may be sent to it.

    The URL must be https, and its host must resolve to public addresses only (see `ssrf_guard`). With
    `allow_loopback`, a host that resolves to loopback addresses is accepted too, over http or https.
    The DNS lookup takes up to `ssrf_guard.LOOKUP_TIMEOUT_SECONDS`, so call this outside a transaction.
    """
    url = (url or "").strip()
    parts = urlsplit(url)
    if len(url) > URL_MAX:
        raise InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."), field="url",
                         limit=URL_MAX)
    if not parts.hostname or parts.scheme not in ("https", "http") or not _has_valid_port(parts):
        raise _not_https()
    if parts.scheme == "http" and not allow_loopback:
        raise _not_https()
    if parts.username or parts.password:
        raise InputError("invalid_url", N_("Field %(field)s must not contain a user name or password."), field="url")
    addresses = _registration_addresses(parts.hostname, allow_loopback)
    if parts.scheme == "http" and not _all_loopback(addresses):
        raise _not_https()
    return CheckedUrl(url)


def _registration_addresses(host: str, allow_loopback: bool) -> list[ssrf_guard.IPAddress]:
    try:
        return ssrf_guard.checked_addresses(host, allow_loopback)
    except ssrf_guard.LookupFailed as error:
        log.info("Webhooks: registration rejected: %s", error)
        if error.temporary:
            raise InputError("unresolved_host", N_("The host name %(host)s in field %(field)s could not be looked up "
                                                   "now; try again later."), field="url", host=host) from None
        raise InputError("unresolved_host", N_("The host name %(host)s in field %(field)s was not found; "
                                               "check the URL."), field="url", host=host) from None
    except ssrf_guard.AddressRejected as error:
        log.warning("Webhooks: registration rejected: %s", error)
        raise InputError("invalid_url", N_("Field %(field)s must not point to a loopback, private or reserved "
                                           "network address."), field="url") from None


def _not_https() -> InputError:
    return InputError("invalid_url", N_("Field %(field)s must be an https URL, such as https://example.cn/hook."),
                      field="url")


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:  # not a number, or above 65535
        return False


def _all_loopback(addresses: list[ssrf_guard.IPAddress]) -> bool:
    return all(address.is_loopback for address in addresses)


def find_for_token(session: Session, token_id: int) -> Webhook | None:
    return session.exec(select(Webhook).where(Webhook.token_id == token_id)).first()


def remove(session: Session, webhook: Webhook) -> None:
    """Delete a webhook; its pending deliveries fail at their next attempt."""
    session.delete(webhook)
    log.info("Webhooks: webhook %s of token %s removed", webhook.id, webhook.token_id)


# --- status changes --------------------------------------------------------------------------------


def queue_status_change(session: Session, ticket: Ticket, from_status: str, to_status: str, now: datetime) -> int:
    """Queue one delivery per live webhook of the ticket's source; return how many were queued.

    Only referral tickets (those with an external id) are sent. The idempotency key is the webhook and
    the status event, so a job that runs twice queues nothing twice.
    NOTE: a ticket still has its placeholder number until its creating transaction commits; no status
    changes in that transaction today.
    """
    if ticket.external_id is None:
        return 0
    hooks = _live_webhooks(session, ticket.source)
    if not hooks:
        return 0
    event = session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).where(TicketEvent.kind == "status")
        .order_by(TicketEvent.id.desc())
    ).first()
    body = status_change_body(ticket, event.id, from_status, to_status, now)
    for webhook in hooks:
        outbox.add_message(session, CHANNEL, f"webhook:{webhook.id}", body,
                           idempotency_key=f"webhook:{webhook.id}:event:{event.id}", ticket_id=ticket.id)
    log.info("Webhooks: ticket %s status %s -> %s queued for %s webhook(s)", ticket.number, from_status, to_status,
             len(hooks))
    return len(hooks)


def _live_webhooks(session: Session, source: str) -> list[Webhook]:
    return list(session.exec(
        select(Webhook).join(ApiToken, ApiToken.id == Webhook.token_id)
        .where(Webhook.source == source).where(ApiToken.revoked_at.is_(None)).order_by(Webhook.id)
    ).all())


def status_change_body(ticket: Ticket, event_id: int, from_status: str, to_status: str, now: datetime) -> str:
    """The JSON a receiver gets, compact and with Chinese left unescaped; it is signed byte for byte."""
    payload = {
        "type": EVENT_TYPE,
        "event_id": event_id,
        "occurred_at": isoformat(now),
        "source": ticket.source,
        "external_id": ticket.external_id,
        "ticket_number": ticket.number,
        "previous_status": from_status,
        "status": to_status,
        "status_label": label(STATUSES, to_status, "zh"),
    }
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


# --- signing and sending ---------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: str) -> str:
    """Hex HMAC-SHA256 of `timestamp + "." + body` under `secret`, all encoded as UTF-8."""
    message = f"{timestamp}.{body}".encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: str, now: datetime) -> dict[str, str]:
    timestamp = str(int(now.timestamp()))
    return {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "hotline-59200496-webhooks",
        "X-Hotline-Timestamp": timestamp,
        "X-Hotline-Signature": "sha256=" + signature(secret, timestamp, body),
    }


def find_target(session: Session, message: OutboxMessage) -> Target | None:
    """The URL and secret a delivery goes to now, or None when its webhook or token is gone."""
    webhook_id = int(message.recipient.removeprefix("webhook:"))
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        return None
    token = session.get(ApiToken, webhook.token_id)
    if token is None or token.revoked_at is not None:
        return None
    return Target(webhook.url, webhook.secret)


def post(target: Target, body: str, now: datetime, allow_loopback: bool = False) -> int:
    """POST a signed body to a checked address of the URL's host; return the HTTP status.

    The host is resolved again for every attempt, and the request connects to an address that passed the
    check, so a name that has come to resolve to an internal address is not posted to (DestinationRejected).
    Raises WebhookError for a failed lookup, a failed request or a response other than 2xx.
    """
    parts = urlsplit(target.url)
    addresses = _delivery_addresses(parts, allow_loopback)
    try:
        response = ssrf_guard.post(target.url, addresses, data=body.encode("utf-8"),
                                   headers=signed_headers(target.secret, body, now), timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise WebhookError(f"{type(error).__name__}: {error}") from error
    if not 200 <= response.status_code < 300:
        raise WebhookError(f"HTTP {response.status_code}")
    return response.status_code


def _delivery_addresses(parts: SplitResult, allow_loopback: bool) -> list[ssrf_guard.IPAddress]:
    try:
        addresses = ssrf_guard.checked_addresses(parts.hostname, allow_loopback)
    except ssrf_guard.LookupFailed as error:
        raise WebhookError(str(error)) from None
    except ssrf_guard.AddressRejected as error:
        raise DestinationRejected(f"not sent: {parts.hostname} resolves to a loopback, private or reserved "
                                  "address", str(error)) from None
    if parts.scheme == "http" and not _all_loopback(addresses):
        public = next(address for address in addresses if not address.is_loopback)
        raise DestinationRejected(f"not sent: the URL is plain http and {parts.hostname} resolves to an address "
                                  "that is not loopback", f"{parts.hostname} resolves to {public}")
    return addresses


def record_failed_attempt(session: Session, message: OutboxMessage, error: str, now: datetime,
                          retryable: bool = True) -> None:
    """Schedule the next attempt with back-off, or mark the delivery failed once 24 hours have passed."""
    message.last_error = error[:500]
    deadline = as_aware_utc(message.created_at) + RETRY_WINDOW
    if not retryable or now >= deadline:
        message.status = "failed"
        log.error("Webhooks: delivery %s failed for good after %s attempts: %s", message.id, message.attempts, error)
    else:
        delay = min(FIRST_RETRY_SECONDS * 2 ** max(message.attempts - 1, 0), MAX_RETRY_SECONDS)
        message.status = "pending"
        message.next_attempt_at = min(now + timedelta(seconds=delay), deadline)
        log.warning("Webhooks: delivery %s attempt %s failed, retry at %s: %s", message.id, message.attempts,
                    message.next_attempt_at.isoformat(), error)
    session.add(message)


# --- reading deliveries ----------------------------------------------------------------------------


def deliveries(session: Session, webhook: Webhook, limit: int, offset: int = 0,
               state: str | None = None) -> list[tuple[OutboxMessage, str | None]]:
    """A webhook's deliveries with their ticket numbers, newest first; `state` filters by DELIVERY_STATES."""
    query = (
        select(OutboxMessage, Ticket.number).join(Ticket, Ticket.id == OutboxMessage.ticket_id, isouter=True)
        .where(OutboxMessage.channel == CHANNEL).where(OutboxMessage.recipient == f"webhook:{webhook.id}")
    )
    if state is not None:
        statuses = [status for status, shown in DELIVERY_STATES.items() if shown == state]
        query = query.where(OutboxMessage.status.in_(statuses))
    rows = session.exec(query.order_by(OutboxMessage.id.desc()).offset(offset).limit(limit)).all()
    return [(message, number) for message, number in rows]


def delivery_view(message: OutboxMessage, ticket_number: str | None) -> dict[str, Any]:
    state = DELIVERY_STATES.get(message.status, message.status)
    return {
        "id": message.id,
        "ticket_number": ticket_number,
        "state": state,
        "attempts": message.attempts,
        "created_at": isoformat(message.created_at),
        "delivered_at": isoformat(message.sent_at),
        "next_attempt_at": isoformat(message.next_attempt_at) if state == "pending" else None,
        "last_error": message.last_error,
        "body": json.loads(message.body),
    }


def webhook_view(webhook: Webhook) -> dict[str, Any]:
    return {
        "url": webhook.url,
        "source": webhook.source,
        "created_at": isoformat(webhook.created_at),
        "updated_at": isoformat(webhook.updated_at),
    }
