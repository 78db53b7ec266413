"""The 帮办 checklist of an assisted application (公民身故一件事): its items, their status and changes.

A ticket of category `assisted_application` gets one item per entry of
routing_rules/assisted_application.yaml, when it is opened or when its category changes to it. Staff
change items through the API and the ticket page. Other faces, such as a referrer portal, call
`parse_changes` and `update_items`, which validate the same way and record one ticket event per item
change. A ticket is resolved with open items only when the reason names each of them (see
`unnamed_items`, checked by `hotline.tickets.transition`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session, select

from hotline.events import new_event, record_event
from hotline.models import ChecklistItem, Ticket, TicketEvent
from hotline.rows import new_row
from hotline.rules.expressions import RuleError
from hotline.validation import N_, InputError, required, unknown_value, wrong_type

log = logging.getLogger("hotline.checklists")

CATEGORY = "assisted_application"
CHECKLIST_FILE = "assisted_application.yaml"
STATUSES = {
    "todo": ("待办", "To do"),
    "in_progress": ("办理中", "In progress"),
    "done": ("已完成", "Done"),
    "not_applicable": ("不适用", "Not applicable"),
}
OPEN_STATUSES = ("todo", "in_progress")
EVENT_KINDS = {
    "checklist_created": ("建立帮办清单", "Checklist created"),
    "checklist_item": ("帮办事项更新", "Checklist item updated"),
}
# Items can no longer change once the ticket is closed or cancelled; a resolved ticket still records
# an item the family finishes later.
LOCKED_TICKET_STATUSES = ("closed", "cancelled")
NOTE_MAX = 500
CHANGE_KEYS = ("code", "status", "note")

_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ENTRY_KEYS = {"code", "title", "title_en", "short_names", "office", "documents"}
_TEXT_LIMITS = {"title": 100, "title_en": 100, "office": 500}


@dataclass(frozen=True)
class ChecklistEntry:
    """One item as the checklist file defines it."""

    code: str
    title: str
    title_en: str
    short_names: tuple[str, ...]
    office: str
    documents: tuple[str, ...]


@dataclass(frozen=True)
class ChecklistDefinition:
    entries: tuple[ChecklistEntry, ...]


@dataclass(frozen=True)
class ItemChange:
    """A requested change of one item; `note` is None when the request leaves the note as it is."""

    code: str
    status: str | None
    note: str | None


# --- the checklist file --------------------------------------------------------------------------


def load_checklist(path: Path) -> ChecklistDefinition:
    """Read and check the checklist file; raise RuleError naming the file, the item and the problem."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RuleError(f"{path}: cannot be read: {error}") from None
    if not isinstance(data, dict) or set(data) != {"items"}:
        raise RuleError(f"{path}: expected a mapping with the single key 'items'")
    specs = data["items"]
    if not isinstance(specs, list) or not specs:
        raise RuleError(f"{path}: items must be a non-empty list")

    entries = tuple(_entry(path, index, spec) for index, spec in enumerate(specs))
    codes = [entry.code for entry in entries]
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        raise RuleError(f"{path}: item codes must be unique; repeated: {duplicates}")
    return ChecklistDefinition(entries)


def _entry(path: Path, index: int, spec: Any) -> ChecklistEntry:
    where = f"{path}, item {index + 1}"
    if not isinstance(spec, dict):
        raise RuleError(f"{where}: expected a mapping")
    missing = sorted(_ENTRY_KEYS - {"short_names"} - set(spec))
    unknown = sorted(set(spec) - _ENTRY_KEYS)
    if missing or unknown:
        raise RuleError(f"{where}: missing keys {missing}, unknown keys {unknown}; accepted: {sorted(_ENTRY_KEYS)}")
    code = spec["code"]
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise RuleError(f"{where}: code {code!r} must be lower-case letters, digits and underscores (at most 40)")

    where = f"{path}, item {code}"
    texts = {key: _text(where, key, spec[key], limit) for key, limit in _TEXT_LIMITS.items()}
    return ChecklistEntry(
        code=code,
        title=texts["title"],
        title_en=texts["title_en"],
        short_names=_texts(where, "short_names", spec.get("short_names") or [], allow_empty=True),
        office=texts["office"],
        documents=_texts(where, "documents", spec["documents"], allow_empty=False),
    )


def _text(where: str, key: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"{where}: {key} must be a non-empty string")
    if len(value) > limit:
        raise RuleError(f"{where}: {key} is {len(value)} characters long; the maximum is {limit}")
    return value.strip()


def _texts(where: str, key: str, value: Any, allow_empty: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise RuleError(f"{where}: {key} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise RuleError(f"{where}: {key} must list at least one entry")
    return tuple(item.strip() for item in value)


# --- creating and reading ------------------------------------------------------------------------


def ensure_checklist(session: Session, runtime, ticket: Ticket, actor: str, now: datetime) -> list[TicketEvent]:
    """Add the checklist to an assisted-application ticket that has none; return the events written.

    Tickets of other categories, and tickets that already have a checklist, are left alone, so callers
    may call this after any change of a ticket's category.
    """
    if ticket.category != CATEGORY or _has_items(session, ticket):
        return []

    items, events = plan_checklist(runtime, ticket, actor, now)
    session.add_all([*items, *events])
    session.flush()
    return events


def plan_checklist(runtime, ticket: Ticket, actor: str, now: datetime) -> tuple[list[ChecklistItem], list[TicketEvent]]:
    """Build the checklist items and event of a new assisted-application ticket, without adding them to a session.

    Tickets of other categories get none. The items' ticket_id is the ticket's id, None until it is inserted.
    """
    if ticket.category != CATEGORY:
        return [], []

    definition: ChecklistDefinition = runtime.component("checklist")
    items = [
        new_row(
            ChecklistItem,
            ticket_id=ticket.id, code=entry.code, position=position, title=entry.title, title_en=entry.title_en,
            short_names=list(entry.short_names), office=entry.office, documents=list(entry.documents),
            status="todo", created_at=now,
        )
        for position, entry in enumerate(definition.entries, start=1)
    ]
    codes = [entry.code for entry in definition.entries]
    event = new_event(ticket, "checklist_created", actor=actor, to_value=str(len(codes)), at=now,
                      data={"items": codes})
    log.info("Checklists: ticket %s got %d items", ticket.number, len(codes))
    return items, [event]


def _has_items(session: Session, ticket: Ticket) -> bool:
    return session.exec(select(ChecklistItem.id).where(ChecklistItem.ticket_id == ticket.id).limit(1)).first() \
        is not None


def items_of(session: Session, ticket: Ticket) -> list[ChecklistItem]:
    """Return the ticket's checklist items in checklist order; an empty list when it has no checklist."""
    return list(session.exec(select(ChecklistItem).where(ChecklistItem.ticket_id == ticket.id)
                             .order_by(ChecklistItem.position, ChecklistItem.id)).all())


def open_items(session: Session, ticket: Ticket) -> list[ChecklistItem]:
    """Return the items still to do or in progress."""
    return [item for item in items_of(session, ticket) if item.status in OPEN_STATUSES]


def unnamed_items(items: list[ChecklistItem], reason: str | None) -> list[ChecklistItem]:
    """Return the items of `items` that `reason` does not name by title or by one of their short names."""
    text = (reason or "").casefold()
    return [item for item in items
            if not any(name.casefold() in text for name in (item.title, *(item.short_names or [])))]


def titles(items: list[ChecklistItem]) -> str:
    """Join item titles for a message, in the Chinese list style."""
    return "、".join(item.title for item in items)


# --- changing items ------------------------------------------------------------------------------


def parse_changes(body: Any) -> list[ItemChange]:
    """Read {"items": [{"code", "status", "note"}, ...]} from a request; raise InputError naming the field.

    A change needs `code` and at least one of `status` and `note`. An empty `note` clears the note.
    """
    if not isinstance(body, dict):
        raise InputError("invalid_body", N_("Request body must be a JSON object."), status=400)
    _reject_unknown_fields(body, ("items",), "")
    specs = body.get("items")
    if specs is None:
        raise required("items")
    if not isinstance(specs, list) or not specs:
        raise InputError("invalid_type", N_("Field %(field)s must be a non-empty list of changes."), field="items")
    return [_change(index, spec) for index, spec in enumerate(specs)]


def _change(index: int, spec: Any) -> ItemChange:
    prefix = f"items[{index}]"
    if not isinstance(spec, dict):
        raise wrong_type(prefix, "object")
    _reject_unknown_fields(spec, CHANGE_KEYS, f"{prefix}.")

    code = spec.get("code")
    if code is None:
        raise required(f"{prefix}.code")
    if not isinstance(code, str):
        raise wrong_type(f"{prefix}.code", "string")
    status = spec.get("status")
    if status is not None and (not isinstance(status, str) or status not in STATUSES):
        raise unknown_value(f"{prefix}.status", status, STATUSES)
    note = spec.get("note")
    if note is not None and not isinstance(note, str):
        raise wrong_type(f"{prefix}.note", "string")
    if note is not None and len(note.strip()) > NOTE_MAX:
        raise InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."),
                         field=f"{prefix}.note", limit=NOTE_MAX)
    if status is None and note is None:
        raise InputError("required", N_("Change %(field)s needs a status or a note."), field=prefix)
    return ItemChange(code=code, status=status, note=None if note is None else note.strip())


def _reject_unknown_fields(body: dict, known: tuple[str, ...], prefix: str) -> None:
    for key in body:
        if key not in known:
            raise InputError("unknown_field", N_("Unknown field %(field)s; accepted fields: %(accepted)s."),
                             field=prefix + str(key), accepted=", ".join(known))


def update_items(session: Session, ticket: Ticket, changes: list[ItemChange], actor: str,
                 now: datetime) -> list[ChecklistItem]:
    """Apply `changes` to the ticket's checklist, one event per changed item; return every item.

    All changes are checked before any is applied, so a bad one leaves the checklist as it was. An
    item whose status and note stay the same is not touched and gets no event.
    """
    items = items_of(session, ticket)
    if not items:
        raise InputError("no_checklist", N_("Ticket %(number)s has no checklist."), field="number", status=404,
                         number=ticket.number)
    if ticket.status in LOCKED_TICKET_STATUSES:
        raise InputError("ticket_closed", N_("Ticket %(number)s is closed or cancelled; its checklist cannot "
                                             "change."), status=409, number=ticket.number)
    by_code = {item.code: item for item in items}
    _check_codes(changes, by_code)

    for change in changes:
        _apply(session, ticket, by_code[change.code], change, actor, now)
    return items


def _check_codes(changes: list[ItemChange], by_code: dict[str, ChecklistItem]) -> None:
    seen: set[str] = set()
    for index, change in enumerate(changes):
        field = f"items[{index}].code"
        if change.code not in by_code:
            raise unknown_value(field, change.code, list(by_code))
        if change.code in seen:
            raise InputError("invalid_value", N_("Item %(value)s is changed twice in %(field)s."), field=field,
                             value=change.code)
        seen.add(change.code)


def _apply(session: Session, ticket: Ticket, item: ChecklistItem, change: ItemChange, actor: str,
           now: datetime) -> None:
    old_status = item.status
    new_status = change.status or old_status
    new_note = item.note if change.note is None else (change.note or None)
    if new_status == old_status and new_note == item.note:
        return

    item.status = new_status
    item.note = new_note
    item.updated_by = actor
    item.updated_at = now
    session.add(item)
    record_event(session, ticket, "checklist_item", actor=actor, from_value=old_status, to_value=new_status,
                 reason=new_note, at=now, data={"item": item.code, "title": item.title})
    log.info("Checklists: ticket %s item %s %s -> %s by %s", ticket.number, item.code, old_status, new_status,
             actor)
