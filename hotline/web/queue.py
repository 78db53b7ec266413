"""The operators' queue: open tickets in serving order, filters, SLA colours and "claim next"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from sqlmodel import Session, func, select

from hotline import tickets
from hotline.clock import now
from hotline.i18n import current_language
from hotline.models import SlaClock, Ticket, User
from hotline.phones import mask
from hotline.towns import TownInfo, all_towns
from hotline.vocabulary import CATEGORIES, OPEN_STATUSES, PRIORITIES, SOURCES, STATUSES, label
from hotline.web import display

log = logging.getLogger("hotline.web.queue")

bp = Blueprint("web_queue", __name__)

QUEUE_PAGE_SIZE = 200
CLAIM_CANDIDATES = 20
# How often the open queue page fetches its rows again. app.config may override it as QUEUE_REFRESH_SECONDS.
REFRESH_SECONDS = 15


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters, each None when not set. Values outside the vocabulary are ignored."""

    status: str | None = None
    priority: int | None = None
    category: str | None = None
    source: str | None = None
    town: str | None = None

    @classmethod
    def from_args(cls, args, town_codes) -> QueueFilters:
        priority = args.get("priority")
        return cls(
            status=args.get("status") if args.get("status") in OPEN_STATUSES else None,
            priority=int(priority[1]) if priority in PRIORITIES else None,
            category=args.get("category") if args.get("category") in CATEGORIES else None,
            source=args.get("source") if args.get("source") in SOURCES else None,
            town=args.get("town") if args.get("town") in town_codes else None,
        )

    def apply(self, query):
        query = query.where(Ticket.status == self.status) if self.status else query.where(tickets.is_open())
        if self.priority:
            query = query.where(Ticket.priority == self.priority)
        if self.category:
            query = query.where(Ticket.category == self.category)
        if self.source:
            query = query.where(Ticket.source == self.source)
        if self.town:
            query = query.where(Ticket.town_code == self.town)
        return query

    def as_args(self) -> dict[str, str]:
        values = {"status": self.status, "priority": f"P{self.priority}" if self.priority else None,
                  "category": self.category, "source": self.source, "town": self.town}
        return {key: value for key, value in values.items() if value}


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/")
@login_required
def queue():
    return render_template("queue.html", **_queue_context(with_options=True))


@bp.get("/queue/rows")
@login_required
def queue_rows():
    """The queue table's body alone, which the page fetches every REFRESH_SECONDS."""
    return render_template("_queue_rows.html", **_queue_context(with_options=False))


@bp.post("/queue/claim-next")
@login_required
def claim_next():
    """Claim the first unassigned open ticket in queue order and open it.

    Candidates are tried in order; when another operator's claim wins one (the conditional update in
    tickets.claim returns False), the next candidate is tried, so two operators never get the same one.
    """
    at = now()
    with runtime().transaction() as session:
        candidates = session.exec(
            select(Ticket).where(tickets.is_open()).where(Ticket.assigned_to_id.is_(None))
            .order_by(*tickets.queue_order()).limit(CLAIM_CANDIDATES)
        ).all()
        for ticket in candidates:
            if tickets.claim(session, runtime(), ticket, current_user.id, current_user.actor, at):
                log.info("Web queue: %s claimed %s as next", current_user.username, ticket.number)
                flash(gettext("You have claimed ticket %(number)s.", number=ticket.number), "success")
                return redirect(url_for("web_tickets.ticket_page", number=ticket.number))
    flash(gettext("No unassigned ticket is waiting."), "info")
    return redirect(url_for("web_queue.queue"))


def _queue_context(with_options: bool) -> dict[str, Any]:
    """Build what the queue page shows: the first page of rows, the count and, for the whole page, the filters.

    Every query reads an index: the page comes off ix_ticket_open_queue in queue order, and the clocks
    and the assignees are looked up by the ids on the page. Towns come from the in-memory town cache.
    """
    at = now()
    language = current_language()
    with runtime().transaction() as session:
        towns = all_towns(session)
        town_names = {town.code: town.name for town in towns}
        filters = QueueFilters.from_args(request.args, town_names)
        rows = session.exec(rows_query(filters)).all()
        total = session.exec(count_query(filters)).one()
        users = _assignee_names(session, {ticket.assigned_to_id for ticket in rows} - {None})
        clocks = _running_clocks(session, [ticket.id for ticket in rows])

    context = {
        "rows": [_row(ticket, town_names, users, clocks.get(ticket.id, []), at, language) for ticket in rows],
        "total": total,
        "filters": filters,
        "filter_args": filters.as_args(),
        "refresh_seconds": current_app.config.get("QUEUE_REFRESH_SECONDS", REFRESH_SECONDS),
        "language": language,
        "updated_at": display.show_time(at, runtime().settings.timezone),
    }
    if with_options:
        context["options"] = _filter_options(towns, language)
    return context


# The ticket columns a queue row shows. The rule trace, notes and addresses stay in the database.
ROW_COLUMNS = (Ticket.id, Ticket.number, Ticket.priority, Ticket.priority_reasons, Ticket.category, Ticket.source,
               Ticket.town_code, Ticket.caller_phone, Ticket.due_at, Ticket.status, Ticket.assigned_to_id)


def rows_query(filters: QueueFilters):
    """Select the first page of open tickets that match `filters`, in queue order, as rows of ROW_COLUMNS.

    Plain rows, not Ticket objects, because the page only reads them and rows skip the ORM's identity
    map and the JSON of columns the page does not show.

    SQLite reads the page off ix_ticket_open_queue only when it has planner statistics, which the
    scheduler refreshes every hour (hotline.store.refresh_planner_statistics). Without them SQLite 3.40
    reads ix_ticket_queue by status and sorts every open ticket.
    """
    query = filters.apply(select(*ROW_COLUMNS))
    return query.order_by(*tickets.queue_order()).limit(QUEUE_PAGE_SIZE)


def count_query(filters: QueueFilters):
    """Count the open tickets that match `filters`."""
    return filters.apply(select(func.count(Ticket.id)))


def _row(ticket, towns, users, clocks: list, at: datetime, language: str) -> dict[str, Any]:
    text_key = "text_en" if language == "en" else "text_zh"
    due_clock = next((clock for clock in clocks if clock.due_at == ticket.due_at), None)
    breached = any(clock.breached_at is not None for clock in clocks)
    state = display.sla_state(ticket.due_at, getattr(due_clock, "warn_at", None), breached, at)
    return {
        "number": ticket.number,
        "href": url_for("web_tickets.ticket_page", number=ticket.number),
        "priority": f"P{ticket.priority}",
        "reasons": [reason.get(text_key) or reason.get("text_zh") for reason in ticket.priority_reasons or []],
        "category": label(CATEGORIES, ticket.category, language),
        "source": label(SOURCES, ticket.source, language),
        "town": towns.get(ticket.town_code, "") if ticket.town_code else "",
        "caller": mask(ticket.caller_phone) or "",
        "sla_state": state,
        "countdown": display.countdown_text(ticket.due_at, at, language),
        "due": display.show_time(ticket.due_at, runtime().settings.timezone),
        "status": label(STATUSES, ticket.status, language),
        "assignee": users.get(ticket.assigned_to_id, "") if ticket.assigned_to_id else "",
        "unassigned": ticket.assigned_to_id is None,
    }


def _running_clocks(session: Session, ticket_ids: list[int]) -> dict[int, list]:
    """Group the running clocks of these tickets by ticket, as rows of (ticket_id, due_at, warn_at, breached_at)."""
    if not ticket_ids:
        return {}
    grouped: dict[int, list] = {}
    query = (select(SlaClock.ticket_id, SlaClock.due_at, SlaClock.warn_at, SlaClock.breached_at)
             .where(SlaClock.ticket_id.in_(ticket_ids)).where(SlaClock.state == "running"))
    for clock in session.exec(query).all():
        grouped.setdefault(clock.ticket_id, []).append(clock)
    return grouped


def _assignee_names(session: Session, user_ids: set[int]) -> dict[int, str]:
    """Map the ids of the staff that the page's tickets are assigned to onto their display names."""
    if not user_ids:
        return {}
    return dict(session.exec(select(User.id, User.display_name).where(User.id.in_(user_ids))).all())


def _filter_options(towns: tuple[TownInfo, ...], language: str) -> dict[str, list[tuple[str, str]]]:
    return {
        "status": [(code, label(STATUSES, code, language)) for code in OPEN_STATUSES],
        "priority": [(code, code) for code in PRIORITIES],
        "category": [(code, label(CATEGORIES, code, language)) for code in CATEGORIES],
        "source": [(code, label(SOURCES, code, language)) for code in SOURCES],
        "town": [(town.code, town.name) for town in towns],
    }
