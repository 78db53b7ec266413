"""A ticket's dispatch state, and the check that a dispatch action finds the state its caller acted on.

The dispatch state names the ticket's newest offer as ATTEMPT:STATE, such as "2:pending", or is "none"
for a ticket without offers. The ticket page and the API show it, and a dispatch action by hand may send
it back as `expected_dispatch_state`. Any offer made, accepted, declined, timed out or withdrawn changes it, so a
second click on "dispatch again", or a second operator acting on the same page, finds another state and
is rejected with a message naming the newest offer and who changed it when.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from sqlmodel import Session, select

from hotline.clock import local
from hotline.models import Agency, Offer, Ticket, TicketEvent, User
from hotline.tickets import TransitionError
from hotline.validation import N_
from hotline.vocabulary import OFFER_STATES, label

log = logging.getLogger("hotline.dispatch")

NO_OFFER = "none"
PATTERN = re.compile(rf"{NO_OFFER}|[1-9][0-9]{{0,8}}:(?:{'|'.join(OFFER_STATES)})")
# Events that change a ticket's offers; the newest one names who changed the dispatch state.
CHANGE_KINDS = ("offer_sent", "offer_accepted", "offer_declined", "offer_timed_out", "offer_cancelled", "redispatch")
STATE_WORDS = {
    "pending": ("待接单", "pending"),
    "accepted": ("已接单", "accepted"),
    "declined": ("已拒单", "declined"),
    "timed_out": ("已超时", "timed out"),
    "cancelled": ("已撤回", "withdrawn"),
}
SYSTEM_ACTORS = {"dispatch": ("自动派单", "automatic dispatch"), "system": ("系统", "the system")}


class DispatchChanged(TransitionError):
    """A dispatch action not taken because the ticket's newest offer is not the one the caller saw.

    The message names the newest offer and who changed it when. `params_in` words the offer state and a
    system actor in the caller's language, so callers give gettext those params instead of `params`.
    """

    AGAIN = N_("Ticket %(number)s was dispatched again at %(time)s by %(actor)s: its newest offer is now "
               "%(offer_code)s to %(agency)s (%(state)s). Nothing was done; reload the page to see the current "
               "offer.")
    ANSWERED = N_("Offer %(offer_code)s of ticket %(number)s to %(agency)s is now %(state)s, changed at %(time)s by "
                  "%(actor)s. Nothing was done; reload the page to see the current offer.")
    OTHER = N_("The dispatch state of ticket %(number)s is %(current)s, not %(expected)s as sent. Nothing was done; "
               "reload the page to see the current offer.")

    def __init__(self, template: str, facts: dict[str, Any], actor: str | None = None, actor_name: str | None = None):
        self.facts = facts
        self.actor = actor
        self.actor_name = actor_name
        super().__init__(template, code="dispatch_changed", field="expected_dispatch_state", **self.params_in("zh"))

    def params_in(self, language: str) -> dict[str, Any]:
        """Return the message's params with the offer state and a system actor worded in `language`."""
        state = self.facts.get("state")
        words = {**self.facts, "state": label(STATE_WORDS, state, language) if state else ""}
        if self.actor in SYSTEM_ACTORS:
            words["actor"] = label(SYSTEM_ACTORS, self.actor, language)
        else:
            words["actor"] = self.actor_name or self.actor or ""
        return words


def dispatch_state(attempt: int | None, offer_state: str | None) -> str:
    """Word the attempt and state of a ticket's newest offer as "2:pending", or return "none" when there is none."""
    return NO_OFFER if attempt is None else f"{attempt}:{offer_state}"


def is_dispatch_state(text: str) -> bool:
    return PATTERN.fullmatch(text) is not None


def newest_offer(session: Session, ticket: Ticket) -> Offer | None:
    return session.exec(select(Offer).where(Offer.ticket_id == ticket.id).order_by(Offer.attempt.desc())).first()


def check_expected(session: Session, runtime, ticket: Ticket, expected: str | None) -> None:
    """Raise DispatchChanged if the ticket's dispatch state is not `expected`; None skips the check.

    The caller holds the ticket's row lock (hotline.tickets.lock_ticket). The dispatch job, agency
    replies, time-outs, withdrawals and status changes take it before they change an offer, so the state
    cannot change between this check and the action.

    NOTE: a redispatch that held or escalated the ticket made no offer. The state then stays as the
    declined or timed-out offer left it, and a second request with that state dispatches again too. No
    SMS results: no offer is made, and the supervisor's escalation notice is sent once per attempt.
    """
    if expected is None:
        return
    newest = newest_offer(session, ticket)
    current = dispatch_state(newest.attempt, newest.state) if newest else NO_OFFER
    if current == expected:
        return

    log.info("Dispatch: action on ticket %s rejected; its dispatch state is %s, the caller expected %s",
             ticket.number, current, expected)
    raise _changed(session, runtime, ticket, newest, current, expected)


def _changed(session: Session, runtime, ticket: Ticket, newest: Offer | None, current: str,
             expected: str) -> DispatchChanged:
    facts: dict[str, Any] = {"number": ticket.number, "current": current, "expected": expected}
    expected_attempt = 0 if expected == NO_OFFER else int(expected.partition(":")[0])
    change = _latest_change(session, ticket)
    if newest is None or change is None or expected_attempt > newest.attempt:
        return DispatchChanged(DispatchChanged.OTHER, facts)

    agency = session.get(Agency, newest.agency_id)
    facts.update(offer_code=newest.code, agency=agency.name if agency else str(newest.agency_id), state=newest.state,
                 time=local(change.at, runtime.settings.timezone).strftime("%H:%M:%S"))
    template = DispatchChanged.ANSWERED if expected_attempt == newest.attempt else DispatchChanged.AGAIN
    return DispatchChanged(template, facts, change.actor, _actor_name(session, change.actor))


def _latest_change(session: Session, ticket: Ticket) -> TicketEvent | None:
    """Return the newest event that changed the ticket's offers.

    "Dispatch again" records the operator's redispatch event and then an offer sent by the dispatch
    targets, both at the same instant. The redispatch event is returned then, so the operator is named.
    """
    recent = session.exec(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                          .where(TicketEvent.kind.in_(CHANGE_KINDS)).order_by(TicketEvent.id.desc()).limit(10)).all()
    if not recent:
        return None
    newest = recent[0]
    return next((event for event in recent if event.kind == "redispatch" and event.at == newest.at), newest)


def _actor_name(session: Session, actor: str) -> str | None:
    """Name the staff member or agency of an event's actor; return None for any other actor."""
    kind, _, key = actor.partition(":")
    if not key.isdigit():
        return None
    if kind == "user":
        user = session.get(User, int(key))
        return user.display_name if user else None
    if kind == "agency":
        agency = session.get(Agency, int(key))
        return agency.name if agency else None
    return None
