"""Send a recorded day of hotline traffic (JSON lines) to a running service and summarise the result.

Each line is one request: Twilio webhooks are form posts signed with the auth token for the exact URL
they are sent to; referrals are JSON posts with the token issued to their source. The summary is read
back through the staff API, so it shows what the service stored, not what was sent.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from hotline.clock import now as clock_now
from hotline.telephony.signatures import compute_signature

TWILIO_PATHS = {
    "twilio.voice": "/twilio/voice",
    "twilio.gather": "/twilio/voice/menu",
    "twilio.status": "/twilio/voice/status",
}


class Transport(Protocol):
    def post(self, path: str, *, form: dict | None = None, json_body: Any = None,
             headers: dict[str, str]) -> tuple[int, Any]: ...

    def get(self, path: str, *, headers: dict[str, str]) -> tuple[int, Any]: ...


@dataclass
class ReplayCounts:
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    referrals_created: int = 0
    referral_duplicates: int = 0
    webhook_retries: int = 0
    errors: list[str] = field(default_factory=list)


def read_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def send_all(records: list[dict[str, Any]], transport: Transport, base_url: str, auth_token: str,
             source_tokens: dict[str, str], before_each: Callable[[datetime], None] | None = None) -> ReplayCounts:
    """Send every record in order; `before_each` gets the record's instant (tests pin the clock with it)."""
    counts = ReplayCounts()
    seen_webhooks: set[tuple[str, str]] = set()
    shift = None
    for record in records:
        if before_each is not None:
            before_each(datetime.fromisoformat(record["at"]))
        if shift is None:
            last_at = max(datetime.fromisoformat(each["at"]) for each in records)
            shift = death_time_shift(last_at, clock_now())
        status, body = _send(_shifted(record, shift), transport, base_url, auth_token, source_tokens)
        counts.requests += 1
        counts.by_status[status] += 1
        _count(record, status, body, counts, seen_webhooks)
    return counts


def death_time_shift(last_at: datetime, now: datetime) -> timedelta:
    """Return the whole days that move the recording's last day to the day before `now`, in its time zone.

    The service stamps intake with its own clock and rejects a time of death later than that, while a
    recording is sent in seconds. Moved so that its last request falls on the day before, every death
    recorded before its referral is in the past. A replay later on the same day moves them by the same
    days, so its referrals are the same as the first replay's.
    """
    today = now.astimezone(last_at.tzinfo).date()
    return timedelta(days=(today - last_at.date()).days - 1)


def _shifted(record: dict[str, Any], shift: timedelta) -> dict[str, Any]:
    """Move a referral's time of death by `shift` (see `death_time_shift`).

    Every resend of a referral moves by the same `shift`, so it stays identical to the first send.
    """
    died_at = ((record.get("json") or {}).get("deceased") or {}).get("died_at")
    if record.get("kind") != "referral" or not isinstance(died_at, str) or not shift:
        return record
    try:
        moved = (datetime.fromisoformat(died_at) + shift).isoformat(timespec="seconds")
    except ValueError:
        return record
    body = copy.deepcopy(record["json"])
    body["deceased"]["died_at"] = moved
    return {**record, "json": body}


def _send(record, transport: Transport, base_url: str, auth_token: str, source_tokens: dict[str, str]):
    kind = record["kind"]
    if kind in TWILIO_PATHS:
        path = TWILIO_PATHS[kind]
        form = {key: str(value) for key, value in record["form"].items()}
        signature = compute_signature(auth_token, base_url + path, form)
        return transport.post(path, form=form, headers={"X-Twilio-Signature": signature})
    if kind == "referral":
        token = source_tokens.get(record["source"])
        if token is None:
            raise KeyError(f"no API token for source {record['source']!r}")
        return transport.post("/api/v1/referrals", json_body=record["json"],
                              headers={"Authorization": f"Bearer {token}"})
    raise ValueError(f"unknown record kind {kind!r}")


def _count(record, status: int, body, counts: ReplayCounts, seen_webhooks: set) -> None:
    kind = record["kind"]
    if status >= 400:
        counts.errors.append(f"{record['at']} {kind}: HTTP {status} {str(body)[:200]}")
    if kind == "referral":
        if status == 201:
            counts.referrals_created += 1
        elif status == 200:
            counts.referral_duplicates += 1
        return
    key = (kind, record["form"].get("CallSid", ""))
    if key in seen_webhooks:
        counts.webhook_retries += 1
    seen_webhooks.add(key)


def collect_tickets(transport: Transport, staff_token: str) -> list[dict[str, Any]]:
    """Read every ticket back through the staff API, in queue order and with details."""
    headers = {"Authorization": f"Bearer {staff_token}"}
    summaries: list[dict[str, Any]] = []
    path: str | None = "/api/v1/tickets?limit=500"
    while path:
        status, body = transport.get(path, headers=headers)
        if status != 200:
            raise RuntimeError(f"GET {path} failed with HTTP {status}: {body}")
        summaries.extend(body["items"])
        path = _path_of(body["next"])

    details = []
    for summary in summaries:
        status, body = transport.get(f"/api/v1/tickets/{summary['number']}", headers=headers)
        if status != 200:
            raise RuntimeError(f"GET ticket {summary['number']} failed with HTTP {status}: {body}")
        details.append(body)
    return details


def accept_pending_offers(transport: Transport, base_url: str, auth_token: str, staff_token: str,
                          tickets: list[dict[str, Any]], hotline_number: str = "+862159200496") -> int:
    """Accept every pending offer as its agency would, by SMS reply "<code> 接"; return how many were sent."""
    status, body = transport.get("/api/v1/agencies", headers={"Authorization": f"Bearer {staff_token}"})
    if status != 200:
        raise RuntimeError(f"GET /api/v1/agencies failed with HTTP {status}: {body}")
    phones = {agency["id"]: agency["contact_phone"] for agency in body["items"]}

    accepted = 0
    for ticket in tickets:
        for offer in ticket["offers"]:
            if offer["state"] != "pending":
                continue
            form = {"From": phones[offer["agency_id"]], "To": hotline_number, "Body": f"{offer['code']} 接",
                    "MessageSid": f"SMreplay{offer['code']}"}
            signature = compute_signature(auth_token, base_url + "/twilio/sms", form)
            status, _ = transport.post("/twilio/sms", form=form, headers={"X-Twilio-Signature": signature})
            accepted += status == 200
    return accepted


def summarise(counts: ReplayCounts, tickets: list[dict[str, Any]]) -> str:
    """Format the summary: tickets by category, source and priority, duplicates, offers and breaches."""
    offers = [offer for ticket in tickets for offer in ticket["offers"]]
    breaches = [clock for ticket in tickets for clock in ticket["sla"] if clock.get("breached_at")]
    lines = [
        f"requests sent: {counts.requests} ({_format_counter(counts.by_status)})",
        f"tickets: {len(tickets)}",
        f"  by category: {_format_counter(Counter(ticket['category'] for ticket in tickets))}",
        f"  by source:   {_format_counter(Counter(ticket['source'] for ticket in tickets))}",
        f"  by priority: {_format_counter(Counter(ticket['priority'] for ticket in tickets))}",
        f"duplicates absorbed: {counts.referral_duplicates} referrals resent, "
        f"{counts.webhook_retries} Twilio webhooks retried",
        f"offers: {len(offers)} sent, {sum(offer['state'] == 'accepted' for offer in offers)} accepted, "
        f"{sum(offer['state'] == 'pending' for offer in offers)} pending, "
        f"{sum(offer['state'] in ('declined', 'timed_out') for offer in offers)} declined or timed out; "
        f"{sum('dispatch_escalated' in ticket['tags'] for ticket in tickets)} tickets escalated to the supervisor",
        f"SLA breaches: {len(breaches)}",
        f"errors: {len(counts.errors)}",
    ]
    lines += [f"  {error}" for error in counts.errors[:20]]
    return "\n".join(lines)


def _format_counter(counter: Counter) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items(), key=lambda item: str(item[0])))


def _path_of(url: str | None) -> str | None:
    if not url:
        return None
    if "://" in url:
        url = "/" + url.split("://", 1)[1].split("/", 1)[1]
    return url
