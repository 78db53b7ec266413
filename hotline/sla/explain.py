"""A plain-text account of a ticket's SLA clocks: policy, calendar, pauses and the deadline arithmetic."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session, select

from hotline.clock import as_aware_utc, isoformat
from hotline.models import SlaClock, Ticket, TicketEvent
from hotline.sla.calendars import BusinessCalendar
from hotline.sla.clocks import clock_view, working_seconds
from hotline.sla.policies import PolicySet
from hotline.vocabulary import CATEGORIES, CLOCK_OWNERS, SLA_STATES, SLA_TARGETS, STATUSES, label


def hms(seconds: int) -> str:
    """Format seconds as HH:MM:SS, hours may exceed 24."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


Translate = Callable[..., str]


def explain_ticket(
    session: Session, ticket: Ticket, policies: PolicySet, calendars: dict[str, BusinessCalendar], now: datetime,
    gettext: Translate, language: str = "zh",
) -> list[str]:
    """Return the lines that describe each clock of `ticket`, in the order the clocks started.

    `gettext(message, **params)` translates the N_-marked English message ids, and `language` ("zh" or
    "en") picks the labels of codes.
    """
    lines = [gettext("Ticket %(number)s  P%(priority)s  %(category)s  status %(status)s  ticket due %(due)s",
                     number=ticket.number, priority=ticket.priority,
                     category=label(CATEGORIES, ticket.category, language),
                     status=label(STATUSES, ticket.status, language), due=isoformat(ticket.due_at) or "-")]
    clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)).all()
    if not clocks:
        lines.append("  " + gettext("No SLA clocks."))
    for clock in clocks:
        lines.extend(_explain_clock(session, clock, policies, calendars.get(clock.calendar), now, gettext, language))
    return lines


def _explain_clock(
    session: Session, clock: SlaClock, policies: PolicySet, calendar: BusinessCalendar | None, now: datetime,
    gettext: Translate, language: str,
) -> list[str]:
    view = clock_view(clock)
    policy = policies.by_id(clock.policy)
    if policy is not None:
        policy_line = gettext("Policy %(policy)s: %(description)s", policy=clock.policy, description=policy.description)
    else:
        policy_line = gettext("Policy %(policy)s (no longer in the current rules)", policy=clock.policy)
    if calendar is not None:
        calendar_line = gettext("Calendar %(calendar)s (%(hours)s)", calendar=clock.calendar,
                                hours=_calendar_text(calendar, gettext))
    else:
        calendar_line = gettext("Calendar %(calendar)s (no longer in the current configuration)",
                                calendar=clock.calendar)
    arithmetic = gettext("Due = start + duration %(duration)s + paused %(paused)s (working time) = %(due)s",
                         duration=hms(clock.duration_seconds), paused=hms(clock.paused_seconds),
                         due=isoformat(clock.due_at))
    if clock.provisional:
        arithmetic += gettext(" (provisional: the holiday data of a year is missing)")
    lines = [
        "",
        gettext("[%(target)s] %(label)s  owner %(owner)s  state %(state)s", target=clock.target,
                label=label(SLA_TARGETS, clock.target, language), owner=label(CLOCK_OWNERS, clock.owner, language),
                state=label(SLA_STATES, view["state"], language)),
        "  " + policy_line,
        "  " + calendar_line,
        "  " + gettext("Started %(started)s", started=isoformat(clock.started_at)),
        "  " + arithmetic,
    ]
    if clock.warn_at is not None:
        lead = "-"
        if calendar is not None:
            lead = hms(calendar.elapsed(as_aware_utc(clock.warn_at), as_aware_utc(clock.due_at)).seconds)
        warning = gettext("Warning %(warn)s (%(lead)s of working time before the deadline)",
                          warn=isoformat(clock.warn_at), lead=lead)
        if clock.warned_at:
            warning += gettext(", warned at %(warned)s", warned=isoformat(clock.warned_at))
        lines.append("  " + warning)
    lines.extend(_pause_lines(session, clock, gettext))
    if clock.paused_at is not None:
        lines.append("  " + gettext("Paused since %(paused)s", paused=isoformat(clock.paused_at)))
    if calendar is not None:
        used = working_seconds(clock, calendar, now)
        lines.append("  " + gettext("Working time counted %(used)s, remaining %(remaining)s", used=hms(used),
                                    remaining=hms(max(clock.duration_seconds - used, 0))))
    if clock.met_at is not None:
        lines.append("  " + gettext("Met %(met)s", met=isoformat(clock.met_at)))
    if clock.breached_at is not None:
        lines.append("  " + gettext("Breached, deadline %(breached)s", breached=isoformat(clock.breached_at)))
    return lines


def _calendar_text(calendar: BusinessCalendar, gettext: Translate) -> str:
    if calendar.always_open:
        return gettext("24 hours a day, every day")
    periods = ", ".join(f"{opens // 3600:02d}:{opens % 3600 // 60:02d}-{closes // 3600:02d}:{closes % 3600 // 60:02d}"
                        for opens, closes in calendar.periods)
    if calendar.use_chinese_calendar:
        return gettext("%(periods)s, with the statutory holidays and makeup workdays", periods=periods)
    return periods


def _pause_lines(session: Session, clock: SlaClock, gettext: Translate) -> list[str]:
    events = session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == clock.ticket_id)
        .where(TicketEvent.kind.in_(("sla_paused", "sla_resumed"))).order_by(TicketEvent.at, TicketEvent.id)
    ).all()
    lines = []
    paused_from = None
    for event in events:
        if (event.data or {}).get("target") != clock.target:
            continue
        if event.kind == "sla_paused":
            paused_from = event.at
        else:
            seconds = (event.data or {}).get("paused_seconds", 0)
            lines.append("  " + gettext("Paused %(begin)s to %(end)s, counting %(seconds)s of working time",
                                        begin=isoformat(paused_from) if paused_from else "?",
                                        end=isoformat(event.at), seconds=hms(seconds)))
            paused_from = None
    return lines
