"""The facts a rule condition reads, built from a ticket or from a partial mapping in a test case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotline.rules.expressions import TICKET_FACTS

HISTORY_KEYS = ("open_tickets_of_caller", "calls_last_30_days")
CLOCK_KEYS = ("working_time", "holiday")

_LIST_FACTS = ("needs", "flags", "tags")
_BOOLEAN_FACTS = ("is_referral", "pilot_town", "working_time", "holiday")
_NUMBER_FACTS = ("priority", "open_tickets_of_caller", "calls_last_30_days")

# Values for facts a test case leaves out: a resident's phone call with nothing special about it.
_NEUTRAL_FACTS: dict[str, Any] = {
    "category": "",
    "channel": "phone",
    "source": "resident",
    "needs": [],
    "flags": [],
    "tags": [],
    "town": "",
    "town_code": "",
    "pilot_town": False,
    "priority": 3.0,
    "open_tickets_of_caller": 0.0,
    "calls_last_30_days": 0.0,
    "working_time": False,
    "holiday": False,
}


def ticket_facts(ticket, town=None, history: Mapping | None = None, clock: Mapping | None = None) -> dict:
    """Build the facts of `ticket` (a hotline.models.Ticket) with every key of TICKET_FACTS.

    `town` is the ticket's hotline.models.Town, or None when the ticket has no town.
    `history` may give `open_tickets_of_caller` and `calls_last_30_days`, counted by the caller of
    this function over the caller's other tickets and calls (default 0). `clock` may give
    `working_time` and `holiday` for the moment of evaluation (default False).
    Unknown keys in `history` or `clock` raise ValueError, so a misspelt key cannot silently read as 0.
    """
    history = _checked(history, HISTORY_KEYS, "history")
    clock = _checked(clock, CLOCK_KEYS, "clock")
    if town is not None and ticket.town_code not in (None, town.code):
        raise ValueError(f"ticket {ticket.number} is in town {ticket.town_code}, not in {town.code}")

    return {
        "category": ticket.category or "",
        "channel": ticket.channel or "",
        "source": ticket.source or "",
        "is_referral": ticket.source != "resident",
        "needs": [str(need) for need in ticket.needs or []],
        "flags": [str(flag) for flag in ticket.flags or []],
        "tags": [str(tag) for tag in ticket.tags or []],
        "town": town.name if town is not None else "",
        "town_code": ticket.town_code or (town.code if town is not None else ""),
        "pilot_town": bool(town.pilot) if town is not None else False,
        "priority": float(ticket.priority),
        "open_tickets_of_caller": float(history.get("open_tickets_of_caller", 0)),
        "calls_last_30_days": float(history.get("calls_last_30_days", 0)),
        "working_time": bool(clock.get("working_time", False)),
        "holiday": bool(clock.get("holiday", False)),
    }


def facts_with_defaults(partial: Mapping[str, Any]) -> dict[str, Any]:
    """Complete a partial set of facts, as written in a test case, with neutral values.

    Omitted facts read as a resident's phone call (see _NEUTRAL_FACTS); `is_referral`, when omitted,
    follows `source` the way ticket_facts derives it. Raise ValueError naming an unknown fact or a
    value of the wrong type.
    """
    unknown = sorted(set(partial) - set(TICKET_FACTS))
    if unknown:
        raise ValueError(f"unknown fact {', '.join(unknown)}; known facts: {', '.join(sorted(TICKET_FACTS))}")

    facts = dict(_NEUTRAL_FACTS)
    for name, value in partial.items():
        facts[name] = _checked_value(name, value)
    if "is_referral" not in partial:
        facts["is_referral"] = facts["source"] != "resident"
    return facts


def _checked(values: Mapping | None, allowed: tuple[str, ...], what: str) -> Mapping:
    values = values or {}
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} key {', '.join(unknown)}; expected {', '.join(allowed)}")
    return values


def _checked_value(name: str, value: Any) -> Any:
    if name in _LIST_FACTS:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"fact {name} must be a list of strings, not {value!r}")
        return list(value)
    if name in _BOOLEAN_FACTS:
        if not isinstance(value, bool):
            raise ValueError(f"fact {name} must be true or false, not {value!r}")
        return value
    if name in _NUMBER_FACTS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"fact {name} must be a number, not {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"fact {name} must be a string, not {value!r}")
    return value
