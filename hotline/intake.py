"""Intake: a referral, a call or a call event in, exactly one ticket out, rules applied.

Every function runs inside the caller's transaction and is idempotent on its natural key:
`(source, external_id)` for referrals and `CallSid` for calls. A concurrent duplicate that slips past
the lookup fails on the unique constraint; the API retries the transaction, which then finds the row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, select

from hotline import locks, phones, system_reasons
from hotline.agencies import DISPATCHABLE_STATUSES
from hotline.clock import SHANGHAI, isoformat
from hotline.driver_sql import fetch_one
from hotline.events import record_event
from hotline.models import Agency, Call, Referral, Ticket, TicketEvent
from hotline.outbox import schedule_job
from hotline.rows import new_row
from hotline.telephony.twiml import MENU_CATEGORIES
from hotline.ticket_insert import insert_new_ticket
from hotline.tickets import (
    HISTORY_WINDOW,
    NewTicket,
    apply_rules,
    assign_numbers,
    caller_history_counts,
    create_ticket,
    find_open_ticket_of_caller,
    history_counts,
    plan_ticket,
    write_number,
)
from hotline.towns import all_towns, find_town
from hotline.validation import (
    CONTROL_CHARACTER_MESSAGE,
    N_,
    InputError,
    multiple_phones,
    required,
    unknown_field,
    unknown_value,
    wrong_type,
)
from hotline.vocabulary import DEATH_PLACES, FLAGS, NEEDS, REFERRAL_CATEGORIES

log = logging.getLogger("hotline.intake")

REFERRAL_FIELDS = ("external_id", "referrer", "resident", "category", "needs", "flags", "note", "deceased",
                   "chosen_agency")
REFERRER_FIELDS = ("name", "phone", "org")
RESIDENT_FIELDS = ("name", "phone", "town", "committee", "address")
DECEASED_FIELDS = ("died_at", "place")
# How far ahead of the hotline's clock a time of death may lie, for a source whose clock runs fast.
DIED_AT_CLOCK_SKEW = timedelta(minutes=10)
# A time of death before this instant is a typing error, not a case for the hotline.
EARLIEST_DEATH = datetime(1950, 1, 1, tzinfo=SHANGHAI)
FINAL_CALL_STATUSES = ("completed", "busy", "no-answer", "failed", "canceled")
SOURCE_CHANNELS = {"shequyun": "shequyun"}
# hotline.text_guard rejects every other control character in any request. Of a referral's text, only the
# note may contain tabs and line breaks.
TAB_OR_LINE_BREAK = re.compile("[\t\n\r]")
INVALID_PHONE_MESSAGE = N_("Phone number %(value)s is not a valid number; write a mobile number such as "
                           "13812345678 or a landline with its area code such as 021-59200496.")


@dataclass(frozen=True)
class IntakeResult:
    ticket: Ticket
    created: bool
    # The rows written for a ticket created by this intake, so its view needs no queries.
    new_ticket: NewTicket | None = None
    # The referral's own id, which may differ from the ticket's once tickets were merged.
    external_id: str | None = None


# --- referrals -------------------------------------------------------------------------------------


def take_referral(session: Session, runtime, source: str, body: Any, token_id: int | None,
                  now: datetime) -> IntakeResult:
    """File a referral from `source` (taken from the caller's token, never from the body)."""
    referral = validate_referral(session, body)
    resident = referral["resident"]
    existing_id, history = _earlier_referral_and_history(session, source, referral["external_id"],
                                                         resident["phone"], now)
    if existing_id is not None:
        existing = session.get(Referral, existing_id)
        ticket = session.get(Ticket, existing.ticket_id)
        _record_changed_resend(session, existing, ticket, body, referral, now)
        return IntakeResult(ticket, created=False, external_id=referral["external_id"])

    check_death_time(referral, now)
    new_ticket, referral_row = plan_referral(session, runtime, source, referral, body, token_id, history, now)
    _insert_referral_ticket(session, runtime, new_ticket, referral_row)
    if new_ticket.ticket.category == "agency_service":
        schedule_job(session, "dispatch_ticket", new_ticket.ticket.id)
    return IntakeResult(new_ticket.ticket, created=True, new_ticket=new_ticket, external_id=referral["external_id"])


def plan_referral(session: Session, runtime, source: str, referral: dict[str, Any], body: Any, token_id: int | None,
                  history: dict[str, int], now: datetime) -> tuple[NewTicket, Referral]:
    """Plan the ticket of a new, validated referral and build its Referral row, adding neither to the session."""
    resident = referral["resident"]
    new_ticket = plan_ticket(
        session, runtime, now, actor=f"source:{source}", history=history,
        channel=SOURCE_CHANNELS.get(source, "referral_api"), source=source, category=referral["category"],
        needs=referral["needs"], flags=referral["flags"], town_code=resident["town_code"],
        committee=resident.get("committee"), address=resident.get("address"), caller_name=resident.get("name"),
        caller_phone=resident["phone"], caller_phone_ext=resident.get("phone_ext"), note=referral.get("note"),
        chosen_agency_id=referral["chosen_agency_id"],
        deceased=referral.get("deceased"), external_id=referral["external_id"],
    )
    referrer = referral.get("referrer") or {}
    referral_row = new_row(
        Referral,
        source=source, external_id=referral["external_id"], token_id=token_id,
        referrer_name=referrer.get("name"), referrer_phone=referrer.get("phone"), referrer_org=referrer.get("org"),
        payload=body, received_at=now,
    )
    return new_ticket, referral_row


def _insert_referral_ticket(session: Session, runtime, new_ticket: NewTicket, referral_row: Referral) -> None:
    """Insert the referral's ticket with its number, its rows and the referral, as the intake's last writes.

    PostgreSQL writes them all in one statement (see hotline.ticket_insert); SQLite goes through the ORM.
    """
    tz = runtime.settings.timezone
    ticket = new_ticket.ticket
    if session.get_bind().dialect.name == "postgresql":
        insert_new_ticket(session, new_ticket, [referral_row], tz)
    else:
        session.add(ticket)
        session.flush()
        for row in [referral_row, *new_ticket.dependent_rows()]:
            row.ticket_id = ticket.id
            session.add(row)
        session.flush()
        set_committed_value(ticket, "number", write_number(session, ticket, tz))
    log.info("Intake: referral %s/%s created %s (%s, P%s)", referral_row.source, referral_row.external_id,
             ticket.number, ticket.category, ticket.priority)


def _earlier_referral_and_history(session: Session, source: str, external_id: str, phone: str | None,
                                  now: datetime) -> tuple[int | None, dict[str, int]]:
    """Return the id of an earlier referral with this external_id, and the resident phone's history.

    One query reads both, because nearly every referral is new and then needs the history for its rules.
    """
    parameters = {"source": source, "external_id": external_id, "phone": phone, "since": now - HISTORY_WINDOW}
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        row = fetch_one(connection, earlier_and_history_query(), parameters)
    else:
        row = connection.execute(earlier_and_history_query(), parameters).one()
    if not phone:
        return row[0], history_counts(None, None)
    return row[0], history_counts(row[1], row[2])


@cache
def earlier_and_history_query():
    """Build once the query of `_earlier_referral_and_history`, because building it costs as much as running it."""
    earlier = (
        select(Referral.id).where(Referral.source == bindparam("source"))
        .where(Referral.external_id == bindparam("external_id"))
        .scalar_subquery()
    )
    return select(earlier, *caller_history_counts(bindparam("phone"), bindparam("since")))


def _record_changed_resend(session: Session, referral: Referral, ticket: Ticket, body: dict[str, Any],
                           validated: dict[str, Any], now: datetime) -> None:
    """Record a resend whose content differs from the first referral, once per distinct content.

    The ticket keeps the first content: the resend still returns the same ticket, and the event shows
    the operator which fields the referrer changed, so a corrected phone number is not lost. Values are
    compared as stored, so "138-1234-5678" for "13812345678", or a town's code for its name, is no change.
    """
    before, after = _comparable_pair(session, referral.payload or {}, body, validated)
    changed = changed_fields(before, after)
    if not changed:
        return
    fingerprint = hashlib.sha256(json.dumps(after, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    # Identical resends arriving at once would each find no event yet and record one each.
    with locks.serialised(session, locks.CHANGED_RESEND, ticket.id):
        earlier = session.exec(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "referral_resent")
        ).all()
        if any((event.data or {}).get("fingerprint") == fingerprint for event in earlier):
            return
        record_event(session, ticket, "referral_resent", actor=f"source:{referral.source}",
                     to_value=", ".join(changed), at=now,
                     data={"changed": changed, "payload": body, "fingerprint": fingerprint})
    log.info("Intake: referral %s/%s resent with changes to %s for ticket %s", referral.source,
             referral.external_id, ", ".join(changed), ticket.number)


def _comparable_pair(session: Session, payload: dict[str, Any], body: dict[str, Any],
                     validated: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the first body and the resent one laid out by `_comparable`, or both as sent.

    A body accepted earlier can fail validation today, when, say, the agency it chose stopped taking
    offers. The two are then compared as sent, so that differences in layout are not reported as changes.
    """
    try:
        return _comparable(validate_referral(session, payload)), _comparable(validated)
    except InputError:
        return payload, body


def _comparable(validated: dict[str, Any]) -> dict[str, Any]:
    """Lay out a validated referral under the body's own field names, with the values intake stores."""
    resident = validated["resident"]
    referrer = validated["referrer"] or {"name": None, "org": None, "phone": None}
    return {
        "external_id": validated["external_id"],
        "category": validated["category"],
        "needs": sorted(validated["needs"]),
        "flags": sorted(validated["flags"]),
        "note": validated["note"],
        "chosen_agency": validated["chosen_agency_id"],
        "referrer": referrer,
        "resident": {"name": resident["name"], "phone": [resident["phone"], resident["phone_ext"]],
                     "town": resident["town_code"], "committee": resident["committee"],
                     "address": resident["address"]},
        "deceased": validated["deceased"] or {"died_at": None, "place": None},
    }


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    """List the dotted paths whose values differ between two referral bodies, objects compared field by field."""
    changed = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed.extend(changed_fields(old, new, f"{prefix}{key}."))
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


def validate_referral(session: Session, body: Any) -> dict[str, Any]:
    """Check and normalise a referral body; raise InputError naming the first bad field.

    The time of death is checked against the time of receipt by `check_death_time`, for new referrals
    only: a source retrying a referral accepted before that check existed still gets its ticket.
    """
    if not isinstance(body, dict):
        raise InputError("invalid_body", N_("Request body must be a JSON object."), status=400)
    _reject_unknown_fields(body, REFERRAL_FIELDS, "")

    external_id = _string(body, "external_id", required_=True, max_length=64)
    # The id is a segment of the referral's URL, where clients resolve these as path steps.
    if external_id.startswith("/") or external_id in (".", ".."):
        raise InputError("invalid_value", N_("Field external_id may not start with \"/\" or be \".\" or \"..\"; "
                                             "send the referral with another id."), field="external_id")
    category = _string(body, "category", required_=True, max_length=24)
    if category not in REFERRAL_CATEGORIES:
        raise unknown_value("category", category, REFERRAL_CATEGORIES)

    return {
        "external_id": external_id,
        "category": category,
        "needs": _codes(body, "needs", NEEDS),
        "flags": _codes(body, "flags", FLAGS),
        "note": _string(body, "note", max_length=2000, single_line=False),
        "chosen_agency_id": _chosen_agency(session, _string(body, "chosen_agency", max_length=100)),
        "referrer": _referrer(body.get("referrer")),
        "resident": _resident(session, body.get("resident")),
        "deceased": _deceased(body.get("deceased")),
    }


def _referrer(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type("referrer", "object")
    _reject_unknown_fields(value, REFERRER_FIELDS, "referrer.")
    phone = _string(value, "phone", max_length=40, prefix="referrer.")
    return {
        "name": _string(value, "name", max_length=64, prefix="referrer."),
        "org": _string(value, "org", max_length=100, prefix="referrer."),
        "phone": None if phone is None else _phone(phone, "referrer.phone").e164,
    }


def _resident(session: Session, value: Any) -> dict[str, Any]:
    if value is None:
        raise required("resident")
    if not isinstance(value, dict):
        raise wrong_type("resident", "object")
    _reject_unknown_fields(value, RESIDENT_FIELDS, "resident.")

    phone = _phone(_string(value, "phone", required_=True, max_length=40, prefix="resident."), "resident.phone")
    town_name = _string(value, "town", required_=True, max_length=32, prefix="resident.")
    return {
        "name": _string(value, "name", max_length=64, prefix="resident."),
        "phone": phone.e164,
        "phone_ext": phone.extension,
        "town_code": _town_code(session, town_name),
        "committee": _string(value, "committee", max_length=64, prefix="resident."),
        "address": _string(value, "address", max_length=200, prefix="resident."),
    }


def _deceased(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type("deceased", "object")
    _reject_unknown_fields(value, DECEASED_FIELDS, "deceased.")
    died_at = _string(value, "died_at", max_length=40, prefix="deceased.")
    if died_at is not None:
        died_at = _death_instant(died_at)
    place = _string(value, "place", max_length=32, prefix="deceased.")
    if place is not None and place not in DEATH_PLACES:
        raise unknown_value("deceased.place", place, DEATH_PLACES)
    return {"died_at": died_at, "place": place}


def _death_instant(text: str) -> str:
    """Return a time of death as ISO 8601 in Asia/Shanghai with its offset, or as sent when it has no such form.

    RFC 3339 allows a lowercase t and z, which Python's parser does not take.
    """
    try:
        parsed = datetime.fromisoformat(text[:10] + text[10:11].upper() + text[11:].replace("z", "Z"))
    except ValueError:
        raise wrong_type("deceased.died_at", "instant") from None
    if parsed.tzinfo is None:
        raise wrong_type("deceased.died_at", "instant")
    try:
        return isoformat(parsed)
    except OverflowError:
        # A time near year 1 or 9999 leaves the range of datetime in UTC; check_death_time rejects it.
        return text


def check_death_time(referral: dict[str, Any], now: datetime) -> None:
    """Raise InputError when a validated referral received at `now` gives an impossible time of death.

    The time may lie at most DIED_AT_CLOCK_SKEW after `now`, and not before EARLIEST_DEATH in Shanghai.
    """
    died_at = (referral.get("deceased") or {}).get("died_at")
    if died_at is None:
        return
    parsed = datetime.fromisoformat(died_at)
    # The year first, so comparing a time near year 1 cannot overflow in the conversion to UTC.
    if parsed.year < EARLIEST_DEATH.year - 1 or parsed < EARLIEST_DEATH:
        raise InputError("invalid_date", N_("Field %(field)s is %(value)s, before %(year)s; check the year."),
                         field="deceased.died_at", value=died_at, year=EARLIEST_DEATH.year)
    if parsed > now + DIED_AT_CLOCK_SKEW:
        raise InputError("time_in_future", N_("Field %(field)s is %(value)s, more than %(minutes)s minutes after "
                                              "the referral arrived; send the time the death occurred."),
                         field="deceased.died_at", value=died_at, minutes=DIED_AT_CLOCK_SKEW // timedelta(minutes=1))


def _chosen_agency(session: Session, name: str | None) -> int | None:
    """Find the agency the family asked for by its registered name; only agencies that take offers count."""
    if name is None:
        return None
    agencies = session.exec(select(Agency).where(Agency.status.in_(DISPATCHABLE_STATUSES))
                            .order_by(Agency.kind, Agency.name)).all()
    for agency in agencies:
        if agency.name == name:
            return agency.id
    raise unknown_value("chosen_agency", name, [agency.name for agency in agencies])


def _town_code(session: Session, name_or_code: str) -> str:
    town = find_town(session, name_or_code)
    if town is None:
        raise unknown_value("resident.town", name_or_code, [town.name for town in all_towns(session)])
    return town.code


def _phone(text: str, field: str) -> phones.PhoneNumber:
    """Normalise one phone number. A ticket and a referral keep one number each, so a second one is an error."""
    try:
        return phones.normalise(text)
    except phones.MultiplePhoneNumbers:
        raise multiple_phones(field, text, other_field="note") from None
    except phones.InvalidPhoneNumber:
        raise InputError("invalid_phone", INVALID_PHONE_MESSAGE, field=field, value=text) from None


def _string(body: Mapping, field: str, required_: bool = False, max_length: int = 200, prefix: str = "",
            single_line: bool = True) -> str | None:
    """Return the field's text without surrounding whitespace, or None when it is absent or blank.

    Raise InputError when it is required and missing, not a string, too long, or, with `single_line`,
    contains a tab or a line break.
    """
    value = body.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required_:
            raise required(prefix + field)
        return None
    if not isinstance(value, str):
        raise wrong_type(prefix + field, "string")
    value = value.strip()
    if len(value) > max_length:
        raise InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."),
                         field=prefix + field, limit=max_length)

    control = TAB_OR_LINE_BREAK.search(value) if single_line else None
    if control is not None:
        raise InputError("invalid_character", CONTROL_CHARACTER_MESSAGE, field=prefix + field,
                         character=f"U+{ord(control.group()):04X}")
    return value


def _codes(body: Mapping, field: str, accepted: Mapping[str, Any]) -> list[str]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise wrong_type(field, "list_of_strings")
    for item in value:
        if item not in accepted:
            raise unknown_value(field, item, list(accepted))
    return sorted(set(value))


def _reject_unknown_fields(body: Mapping, known: tuple[str, ...], prefix: str) -> None:
    for key in body:
        if key not in known:
            raise unknown_field(prefix, str(key), known)


# --- calls -----------------------------------------------------------------------------------------


def open_call(session: Session, runtime, form: Mapping[str, str], now: datetime) -> IntakeResult:
    """Attach an incoming call to the caller's open ticket or a new call-back ticket; a retry changes nothing."""
    call_sid = _call_sid(form)
    call = session.exec(select(Call).where(Call.call_sid == call_sid)).first()
    if call is not None:
        return IntakeResult(session.get(Ticket, call.ticket_id), created=False)

    caller = phones.normalise_or_none(form.get("From") or form.get("Caller"))
    ticket = find_open_ticket_of_caller(session, caller) if caller else None
    created = ticket is None
    if created:
        # The category stays `callback` until the caller picks from the menu, so a hang-up before the
        # choice leaves a ticket for an operator to call back.
        ticket = create_ticket(session, runtime, now, actor="twilio", channel="phone", source="resident",
                               category="callback", caller_phone=caller)

    call = Call(call_sid=call_sid, ticket_id=ticket.id, from_phone=caller, to_phone=form.get("To"),
                status=form.get("CallStatus") or "ringing", started_at=now)
    session.add(call)
    session.flush()
    if not created:
        record_event(session, ticket, "call_attached", actor="twilio", to_value=call_sid, at=now,
                     reason=system_reasons.CALLER_HAS_OPEN_TICKET)
    assign_numbers(session, runtime.settings.timezone)
    log.info("Intake: call %s on ticket %s (new ticket: %s)", call_sid, ticket.number, created)
    return IntakeResult(ticket, created=created)


def choose_menu(session: Session, runtime, form: Mapping[str, str], now: datetime) -> IntakeResult:
    """File the call's ticket under the menu choice; a retried webhook or second key press changes nothing."""
    result = open_call(session, runtime, form, now)
    call = session.exec(select(Call).where(Call.call_sid == _call_sid(form))).one()
    digit = (form.get("Digits") or "").strip()
    if call.menu_digit is not None or digit not in MENU_CATEGORIES:
        return IntakeResult(result.ticket, created=False)

    call.menu_digit = digit
    session.add(call)
    ticket = result.ticket
    category, needs = MENU_CATEGORIES[digit]
    _apply_menu_choice(session, runtime, ticket, digit, category, needs, now)
    return IntakeResult(ticket, created=False)


def _apply_menu_choice(session: Session, runtime, ticket: Ticket, digit: str, category: str, needs: list[str],
                       now: datetime) -> None:
    old_category = ticket.category
    urgent = category == "agency_service"
    if old_category == "callback" or (urgent and old_category != "agency_service"):
        ticket.category = category
    ticket.needs = sorted(set(ticket.needs or []) | set(needs))
    if digit == "0":
        ticket.tags = sorted(set(ticket.tags or []) | {"operator_requested"})
    # A status callback can overtake the key press; the choice shows the caller did reach the menu.
    ticket.tags = [tag for tag in ticket.tags or [] if tag != "callback_needed"]
    session.add(ticket)
    record_event(session, ticket, "menu_choice", actor="twilio", from_value=old_category, to_value=ticket.category,
                 data={"digit": digit, "needs": needs}, at=now)

    apply_rules(session, runtime, ticket, now, actor="rules", reason=system_reasons.MENU_CHOICE_REEVALUATED)
    if ticket.category == "agency_service" and old_category != "agency_service":
        schedule_job(session, "dispatch_ticket", ticket.id)


def record_call_status(session: Session, runtime, form: Mapping[str, str], now: datetime) -> IntakeResult:
    """Record how the call ended; a call that ended before a menu choice tags its ticket for a call-back."""
    result = open_call(session, runtime, form, now)
    call = session.exec(select(Call).where(Call.call_sid == _call_sid(form))).one()
    status = (form.get("CallStatus") or "").strip()
    final = status in FINAL_CALL_STATUSES
    if call.ended_at is not None or (call.status == status and not final):
        return IntakeResult(result.ticket, created=False)

    call.status = status or call.status
    if final:
        call.ended_at = now
        call.duration_seconds = _int_or_none(form.get("CallDuration"))
    session.add(call)

    ticket = result.ticket
    record_event(session, ticket, "call_status", actor="twilio", to_value=status, at=now,
                 data={"call_sid": call.call_sid, "duration": call.duration_seconds})
    if final and call.menu_digit is None:
        ticket.tags = sorted(set(ticket.tags or []) | {"callback_needed"})
        session.add(ticket)
        record_event(session, ticket, "callback_needed", actor="twilio", to_value=status, at=now,
                     reason=system_reasons.CALL_ENDED_BEFORE_CHOICE)
    return IntakeResult(ticket, created=False)


def _call_sid(form: Mapping[str, str]) -> str:
    call_sid = (form.get("CallSid") or "").strip()
    if not call_sid:
        raise required("CallSid")
    return call_sid


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
