"""Duplicate tickets: the tickets related to a ticket, and merging a duplicate into the ticket that stays.

Two tickets are related when they have the same caller phone number, or when both carry the same time of
death (and, when both know it, the same place of death and the same town). A merge keeps everything the
duplicate holds:

- its events are copied to the surviving ticket and marked with the duplicate's number (`merged_from`).
  Notes stay notes. Every other event becomes a `merged_event`, so rules, SLA explanations and reports
  that read events by kind never take them for the survivor's own;
- its calls and referrals are moved to the survivor, so a repeated webhook or a resent referral finds it;
- its checklist items move to the survivor, or update the survivor's item of the same code when that one
  has not been started;
- needs and flags are added to the survivor's, and fields the survivor lacks are filled in; the rules
  then run again on the survivor;
- pending offers are withdrawn and their agencies notified by SMS; offers stay on the duplicate as its
  dispatch history.

The duplicate is then cancelled with the reason "并入 QP-...", which stops its SLA clocks, and points to
the survivor through `merged_into_id`. Both tickets get a `merged` event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, select

from hotline import tickets
from hotline.clock import as_aware_utc
from hotline.events import record_event
from hotline.models import Agency, Call, ChecklistItem, Offer, Referral, Ticket, TicketEvent
from hotline.outbox import add_message
from hotline.validation import N_, InputError
from hotline.vocabulary import FINAL_STATUSES, OPEN_STATUSES

log = logging.getLogger("hotline.merging")

RELATED_WINDOW = timedelta(days=30)
RELATED_LIMIT = 20
# Tickets with a time of death read per lookup before the instants are compared in Python.
DEATH_CANDIDATES = 200
REASON_MAX = 500
NOTE_MAX = 2000

MERGED = "merged"
COPIED = "merged_event"
NOTE_KINDS = ("note", "referrer_note")
EVENT_KINDS = {MERGED: ("合并工单", "Tickets merged")}
# Fields copied from the duplicate when the survivor has none; caller_phone brings its extension along.
FILLED_FIELDS = ("caller_name", "caller_phone", "town_code", "committee", "address", "deceased", "chosen_agency_id")
# Fields the priority rules read, so filling or extending them runs the rules again.
RULE_FIELDS = ("needs", "flags", "town_code", "caller_phone")
CHECKLIST_PROGRESS = {"todo": 0, "in_progress": 1, "done": 2, "not_applicable": 2}


@dataclass(frozen=True)
class RelatedTicket:
    """A ticket related to the one on screen, with why it is related."""

    ticket: Ticket
    same_phone: bool
    same_death: bool
    merged_here: bool

    @property
    def mergeable(self) -> bool:
        return self.ticket.status in OPEN_STATUSES and self.ticket.merged_into_id is None


@dataclass(frozen=True)
class MergeSummary:
    """Counts of the rows a merge moved or copied and the names of the fields it filled, stored in both
    `merged` events."""

    events: int
    calls: int
    referrals: int
    checklist_items: int
    offers_withdrawn: int
    filled: list[str]

    def as_data(self, duplicate: Ticket, survivor: Ticket) -> dict[str, Any]:
        return {"from": duplicate.number, "into": survivor.number, "events": self.events, "calls": self.calls,
                "referrals": self.referrals, "checklist_items": self.checklist_items,
                "offers_withdrawn": self.offers_withdrawn, "filled": self.filled}


# --- related tickets -------------------------------------------------------------------------------


def related_tickets(session: Session, ticket: Ticket, now: datetime) -> list[RelatedTicket]:
    """List the tickets related to `ticket`, newest first: open or opened in the last 30 days, plus every
    ticket already merged into it."""
    by_phone = _same_phone(session, ticket, now)
    by_death = _same_death(session, ticket, now)
    merged_here = session.exec(select(Ticket).where(Ticket.merged_into_id == ticket.id)).all()

    found: dict[int, Ticket] = {}
    for other in [*by_phone, *by_death, *merged_here]:
        found[other.id] = other
    phone_ids = {other.id for other in by_phone}
    death_ids = {other.id for other in by_death}
    rows = [RelatedTicket(other, other.id in phone_ids, other.id in death_ids, other.merged_into_id == ticket.id)
            for other in found.values()]
    rows.sort(key=lambda row: (as_aware_utc(row.ticket.created_at), row.ticket.id), reverse=True)
    return rows[:RELATED_LIMIT]


def _live_or_recent(ticket: Ticket, now: datetime):
    """Query of the other tickets that are open or were opened within RELATED_WINDOW."""
    return (
        select(Ticket)
        .where(Ticket.id != ticket.id)
        .where(or_(Ticket.status.in_(OPEN_STATUSES), Ticket.created_at >= now - RELATED_WINDOW))
    )


def _same_phone(session: Session, ticket: Ticket, now: datetime) -> list[Ticket]:
    if not ticket.caller_phone:
        return []
    query = _live_or_recent(ticket, now).where(Ticket.caller_phone == ticket.caller_phone)
    return list(session.exec(query.order_by(Ticket.created_at.desc()).limit(RELATED_LIMIT)).all())


def _same_death(session: Session, ticket: Ticket, now: datetime) -> list[Ticket]:
    """Return the tickets that give the same time of death as `ticket`, compared as instants.

    Intake stores the time in Asia/Shanghai, but tickets filed before it did keep the time as sent, so the
    same instant may be written with different offsets. The query narrows the candidates, and Python
    compares the parsed instants.
    """
    died_at = _death_instant(ticket)
    if died_at is None:
        return []
    query = _live_or_recent(ticket, now).where(Ticket.deceased["died_at"].as_string().is_not(None))
    if ticket.town_code:
        query = query.where(or_(Ticket.town_code.is_(None), Ticket.town_code == ticket.town_code))
    candidates = session.exec(query.order_by(Ticket.created_at.desc()).limit(DEATH_CANDIDATES)).all()
    return [other for other in candidates if _death_instant(other) == died_at and _same_place(ticket, other)]


def _death_instant(ticket: Ticket) -> datetime | None:
    text = (ticket.deceased or {}).get("died_at")
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _same_place(ticket: Ticket, other: Ticket) -> bool:
    place, other_place = (ticket.deceased or {}).get("place"), (other.deceased or {}).get("place")
    return not place or not other_place or place == other_place


# --- merging ---------------------------------------------------------------------------------------


def find_ticket(session: Session, number: str, field: str) -> Ticket:
    """Return the ticket numbered `number`; raise a 404 InputError naming `field` when there is none."""
    ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
    if ticket is None:
        raise InputError("not_found", N_("Ticket %(number)s was not found."), field=field, status=404, number=number)
    return ticket


def merge(session: Session, runtime, survivor: Ticket, duplicate: Ticket, actor: str, reason: str | None,
          now: datetime) -> MergeSummary:
    """Merge `duplicate` into `survivor` within the caller's transaction; raise InputError when refused.

    1. Every refusal is checked before anything is written.
    2. Both rows are taken with conditional UPDATEs in id order, so of two merges of the same pair at
       once (either way round) exactly one goes ahead and neither waits on the other in a deadlock.
    3. Every row of the duplicate is moved or copied, then the duplicate is cancelled.

    NOTE: a platform that sent the duplicate as a referral gets its "cancelled" webhook, and later
    changes of the survivor go to the survivor's source only. Status SMS to portal referrers go to
    one referral of a ticket (hotline.referrers.notify_status_change), so the referrer of a merged
    duplicate may hear nothing more by SMS; the portal still shows them the survivor.
    """
    reason = _checked_reason(reason)
    check_mergeable(session, survivor, duplicate)
    _take_rows(session, survivor, duplicate, now)

    events = _copy_events(session, survivor, duplicate)
    calls = _move(session, Call, duplicate, survivor)
    referrals = _move(session, Referral, duplicate, survivor)
    checklist_items = _merge_checklist(session, survivor, duplicate, actor, now)
    filled = _fill_fields(survivor, duplicate, now)
    pending = list(session.exec(select(Offer).where(Offer.ticket_id == duplicate.id)
                                .where(Offer.state == "pending")).all())

    tickets.transition(session, runtime, duplicate, "cancelled", actor, f"并入 {survivor.number}", now)
    _tell_agencies(session, duplicate, survivor, pending)
    summary = MergeSummary(events, calls, referrals, checklist_items, len(pending), filled)
    for ticket in (survivor, duplicate):
        record_event(session, ticket, MERGED, actor=actor, from_value=duplicate.number, to_value=survivor.number,
                     reason=reason, at=now, data=summary.as_data(duplicate, survivor))
    if set(filled) & set(RULE_FIELDS):
        tickets.apply_rules(session, runtime, survivor, now, actor, f"并入 {duplicate.number}")

    log.info("Merging: %s merged into %s by %s (%s events, %s calls, %s referrals, %s checklist items, "
             "%s offers withdrawn, filled %s)", duplicate.number, survivor.number, actor, events, calls, referrals,
             checklist_items, len(pending), ",".join(filled) or "-")
    return summary


def _checked_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InputError("reason_required", N_("Give a reason for the merge."), field="reason")
    if len(text) > REASON_MAX:
        raise InputError("too_long", N_("The reason is longer than %(limit)s characters."), field="reason",
                         limit=REASON_MAX)
    return text


def check_mergeable(session: Session, survivor: Ticket, duplicate: Ticket) -> None:
    """Raise InputError, naming `number` (the survivor) or `from` (the duplicate), when the merge is refused."""
    if survivor.id == duplicate.id:
        raise InputError("merge_self", N_("A ticket cannot be merged into itself."), field="from")
    if survivor.merged_into_id is not None:
        into = session.get(Ticket, survivor.merged_into_id)
        raise InputError("already_merged", N_("Ticket %(number)s was already merged into %(into)s; merge into "
                                              "%(into)s instead."),
                         field="number", status=409, number=survivor.number, into=into.number)
    if survivor.status in FINAL_STATUSES:
        raise InputError("ticket_finished", N_("Ticket %(number)s is finished, so nothing can be merged into it; "
                                               "reopen it first."),
                         field="number", status=409, number=survivor.number)
    if duplicate.merged_into_id is not None:
        into = session.get(Ticket, duplicate.merged_into_id)
        raise InputError("already_merged", N_("Ticket %(number)s was already merged into %(into)s."),
                         field="from", status=409, number=duplicate.number, into=into.number)
    if duplicate.status in FINAL_STATUSES:
        raise InputError("ticket_finished", N_("Ticket %(number)s is finished; only an open ticket can be merged."),
                         field="from", status=409, number=duplicate.number)
    accepted = session.exec(select(Agency.name).join(Offer, Offer.agency_id == Agency.id)
                            .where(Offer.ticket_id == duplicate.id).where(Offer.state == "accepted")).first()
    if accepted is not None:
        raise InputError("agency_accepted", N_("Agency %(agency)s has accepted ticket %(number)s, so it cannot be "
                                               "merged away; merge the other ticket into it instead."),
                         field="from", status=409, agency=accepted, number=duplicate.number)


def _take_rows(session: Session, survivor: Ticket, duplicate: Ticket, now: datetime) -> None:
    """Mark the duplicate merged and touch the survivor, each only if it is still open and unmerged."""
    for ticket in sorted((survivor, duplicate), key=lambda row: row.id):
        values = {"updated_at": now}
        if ticket is duplicate:
            values["merged_into_id"] = survivor.id
        taken = session.execute(
            update(Ticket).where(Ticket.id == ticket.id).where(Ticket.merged_into_id.is_(None))
            .where(Ticket.status.in_(OPEN_STATUSES)).values(**values)
        ).rowcount == 1
        if not taken:
            raise InputError("merge_conflict", N_("Ticket %(number)s changed while merging; reload the page and try "
                                                  "again."),
                             field="from" if ticket is duplicate else "number", status=409, number=ticket.number)
        session.refresh(ticket)


def _copy_events(session: Session, survivor: Ticket, duplicate: Ticket) -> int:
    events = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == duplicate.id)
                          .order_by(TicketEvent.at, TicketEvent.id)).all()
    for event in events:
        kind, data = _copied_kind_and_data(event, duplicate.number)
        session.add(TicketEvent(ticket_id=survivor.id, at=event.at, actor=event.actor, kind=kind,
                                from_value=event.from_value, to_value=event.to_value, reason=event.reason, data=data))
    return len(events)


def _copied_kind_and_data(event: TicketEvent, number: str) -> tuple[str, dict[str, Any]]:
    """Return the kind and data of the copy of `event`. A copy of a copy keeps the number it first came from."""
    data = dict(event.data or {})
    if event.kind == COPIED:
        return COPIED, data
    if event.kind in NOTE_KINDS:
        return event.kind, {**data, "merged_from": data.get("merged_from", number), "event_id": event.id}
    return COPIED, {"merged_from": number, "kind": event.kind, "event_id": event.id, "data": event.data}


def _move(session: Session, model, duplicate: Ticket, survivor: Ticket) -> int:
    """Point every `model` row (calls, referrals) of the duplicate at the survivor."""
    result = session.execute(update(model).where(model.ticket_id == duplicate.id).values(ticket_id=survivor.id))
    return result.rowcount


def _merge_checklist(session: Session, survivor: Ticket, duplicate: Ticket, actor: str, now: datetime) -> int:
    """Move the duplicate's checklist items to the survivor; return how many moved or updated an item.

    An item whose code the survivor also has updates the survivor's item only when that one has made
    less progress. Otherwise the item stays on the duplicate, where it can still be read.
    """
    theirs = {item.code: item for item in session.exec(select(ChecklistItem)
                                                       .where(ChecklistItem.ticket_id == survivor.id)).all()}
    changed = 0
    for item in session.exec(select(ChecklistItem).where(ChecklistItem.ticket_id == duplicate.id)).all():
        kept = theirs.get(item.code)
        if kept is None:
            item.ticket_id = survivor.id
            session.add(item)
            changed += 1
        elif CHECKLIST_PROGRESS.get(item.status, 0) > CHECKLIST_PROGRESS.get(kept.status, 0):
            _take_item_progress(session, survivor, kept, item, duplicate.number, actor, now)
            changed += 1
    return changed


def _take_item_progress(session: Session, survivor: Ticket, kept: ChecklistItem, item: ChecklistItem,
                        number: str, actor: str, now: datetime) -> None:
    old_status = kept.status
    kept.status = item.status
    kept.note = item.note or kept.note
    kept.updated_by = actor
    kept.updated_at = now
    session.add(kept)
    record_event(session, survivor, "checklist_item", actor=actor, from_value=old_status, to_value=item.status,
                 reason=kept.note, at=now, data={"item": kept.code, "title": kept.title, "merged_from": number})


def _fill_fields(survivor: Ticket, duplicate: Ticket, now: datetime) -> list[str]:
    """Add the duplicate's needs and flags to the survivor's and fill the survivor's empty fields.

    The duplicate's note is appended to the survivor's and cut at the note's 2,000 characters. The whole
    note stays on the duplicate.
    """
    filled = []
    for name in ("needs", "flags"):
        combined = list(getattr(survivor, name) or [])
        combined += [code for code in getattr(duplicate, name) or [] if code not in combined]
        if combined != list(getattr(survivor, name) or []):
            setattr(survivor, name, combined)
            filled.append(name)
    for name in FILLED_FIELDS:
        if getattr(survivor, name) in (None, "", {}) and getattr(duplicate, name) not in (None, "", {}):
            setattr(survivor, name, getattr(duplicate, name))
            filled.append(name)
    if "caller_phone" in filled:
        survivor.caller_phone_ext = duplicate.caller_phone_ext
    if duplicate.note and duplicate.note not in (survivor.note or ""):
        joined = f"{survivor.note}\n" if survivor.note else ""
        survivor.note = f"{joined}【并入 {duplicate.number}】{duplicate.note}"[:NOTE_MAX]
        filled.append("note")
    survivor.updated_at = now
    return filled


def _tell_agencies(session: Session, duplicate: Ticket, survivor: Ticket, offers: list[Offer]) -> None:
    """Send an SMS to each agency whose pending offer the cancellation withdrew, so it does not accept it."""
    for offer in offers:
        agency = session.get(Agency, offer.agency_id)
        add_message(session, "sms", agency.contact_phone,
                    f"【59200496】派单 {offer.code}（工单 {duplicate.number}）已撤回：该工单与 {survivor.number} "
                    f"重复，已合并，无需再处理。",
                    idempotency_key=f"offer:{offer.id}:merged", ticket_id=duplicate.id)
        log.info("Merging: offer %s of %s withdrawn, SMS queued to agency %s", offer.id, duplicate.number,
                 agency.id)
