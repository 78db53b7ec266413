"""The SLA sweep: warn about clocks close to their due instant, flag breached ones, tell the supervisor once.

The query reads the partial index over running, unbreached clocks by next_check_at, which is a
clock's warning instant until it has been warned and its due instant after that, so its cost grows
with what is due, not with what is open. Several schedulers or processes may sweep at once safely.

The sweep also reviews the calendar data: once per process it recomputes the open clocks whose
deadline was provisional (a year the holiday data did not know), so dates added to calendars.yaml
take effect at the next start, and it alerts the supervisor once per year still missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from hotline import outbox
from hotline.clock import as_aware_utc, isoformat
from hotline.clock import now as clock_now
from hotline.events import SYSTEM, record_event
from hotline.models import OutboxMessage, SlaClock, Ticket
from hotline.sla.clocks import breach_notice_body, next_check, schedule, spec_of, warning_notice_body

log = logging.getLogger("hotline.sla")

# A clock whose check failed is looked at again this much later, so one bad row never stalls the sweep.
RETRY_DELAY = timedelta(minutes=5)
BATCH_SIZE = 500
# Set in runtime.components once the provisional clocks have been recomputed on this runtime's calendars.
PROVISIONAL_REVIEWED = "sla_provisional_reviewed"
OPEN = (SlaClock.state == "running", SlaClock.breached_at.is_(None))


@dataclass(frozen=True)
class SweepResult:
    breached: int
    warned: int
    failed: int


def sweep_breaches(runtime, now: datetime | None = None, limit: int = 5000) -> int:
    """Run one sweep and return how many clocks it flagged as breached."""
    return sweep(runtime, now, limit).breached


def sweep(runtime, now: datetime | None = None, limit: int = 5000) -> SweepResult:
    """Review the calendars, then check up to `limit` clocks whose next check is due, earliest first.

    Clocks are handled in batches of BATCH_SIZE, each in one transaction:
      1. claim the breached ones with a conditional UPDATE that sets breached_at = due_at only where
         breached_at is still NULL and due_at <= now; the RETURNING rows are this sweep's to report;
      2. claim the warned ones the same way on warned_at IS NULL and warn_at <= now;
      3. record one `sla_breached` or `sla_warning` event per claimed clock and queue one supervisor
         notice, keyed `sla-breach:<clock id>` or `sla-warning:<clock id>`;
      4. move next_check_at of clocks checked early (a stale next check) to their next instant.
    If a batch fails, its clocks are retried one at a time; a clock that fails alone is logged with
    its id and its next check moves RETRY_DELAY forward, and the sweep goes on.
    """
    now = now or clock_now()
    review_calendars(runtime, now)

    breached = warned = failed = 0
    remaining = limit
    while remaining > 0:
        ids = _due_ids(runtime, now, min(BATCH_SIZE, remaining))
        if not ids:
            break
        try:
            with runtime.transaction() as session:
                counts = _check_batch(session, ids, now)
        except Exception:
            log.warning("SLA sweep: batch of %s clocks failed; checking them one at a time", len(ids),
                        exc_info=True)
            counts = _check_one_by_one(runtime, ids, now)
        breached, warned, failed = breached + counts[0], warned + counts[1], failed + counts[2]
        remaining -= len(ids)
        if len(ids) < BATCH_SIZE:
            break

    if breached or warned or failed:
        log.info("SLA sweep: %s breached, %s warned, %s failed at %s", breached, warned, failed, isoformat(now))
    return SweepResult(breached=breached, warned=warned, failed=failed)


def _due_ids(runtime, now: datetime, limit: int) -> list[int]:
    with runtime.transaction() as session:
        return list(session.exec(
            select(SlaClock.id).where(*OPEN).where(SlaClock.next_check_at <= now)
            .order_by(SlaClock.next_check_at).limit(limit)
        ))


def _check_batch(session: Session, ids: list[int], now: datetime) -> tuple[int, int, int]:
    breached_ids = list(session.execute(
        update(SlaClock).where(SlaClock.id.in_(ids)).where(*OPEN).where(SlaClock.due_at <= now)
        .values(breached_at=SlaClock.due_at, next_check_at=SlaClock.due_at).returning(SlaClock.id)
    ).scalars())
    warned_ids = list(session.execute(
        update(SlaClock).where(SlaClock.id.in_(ids)).where(*OPEN).where(SlaClock.warned_at.is_(None))
        .where(SlaClock.warn_at <= now).values(warned_at=now, next_check_at=SlaClock.due_at)
        .returning(SlaClock.id)
    ).scalars())
    _report(session, breached_ids, warned_ids, now)

    # A clock checked before anything was due (its next check was stale) gets its next instant.
    untouched = set(ids) - set(breached_ids) - set(warned_ids)
    if untouched:
        for clock in session.exec(select(SlaClock).where(SlaClock.id.in_(untouched)).where(*OPEN)):
            clock.next_check_at = max(next_check(clock), now + timedelta(seconds=1))
            session.add(clock)
    return len(breached_ids), len(warned_ids), 0


def _report(session: Session, breached_ids: list[int], warned_ids: list[int], now: datetime) -> None:
    """Add the events and supervisor notices of freshly claimed clocks, reading each row once."""
    claimed = set(breached_ids) | set(warned_ids)
    if not claimed:
        return
    clocks = {clock.id: clock for clock in session.exec(select(SlaClock).where(SlaClock.id.in_(claimed)))}
    tickets = {ticket.id: ticket for ticket in session.exec(
        select(Ticket).where(Ticket.id.in_({clock.ticket_id for clock in clocks.values()})))}
    keys = [f"sla-breach:{clock_id}" for clock_id in breached_ids] + [f"sla-warning:{i}" for i in warned_ids]
    sent = set(session.exec(select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.in_(keys))))

    notices = []
    for clock_id in breached_ids:
        clock = clocks[clock_id]
        ticket = tickets[clock.ticket_id]
        record_event(session, ticket, kind="sla_breached", actor=SYSTEM, at=now,
                     data={"target": clock.target, "due_at": isoformat(clock.due_at)})
        notices.append((f"sla-breach:{clock_id}", breach_notice_body(ticket, clock), ticket.id))
        log.warning("SLA sweep: ticket %s clock %s (%s) breached, due %s", ticket.number, clock_id, clock.target,
                    isoformat(clock.due_at))
    for clock_id in warned_ids:
        clock = clocks[clock_id]
        ticket = tickets[clock.ticket_id]
        record_event(session, ticket, kind="sla_warning", actor=SYSTEM, at=now,
                     data={"target": clock.target, "owner": clock.owner, "warn_at": isoformat(clock.warn_at),
                           "due_at": isoformat(clock.due_at)})
        notices.append((f"sla-warning:{clock_id}", warning_notice_body(ticket, clock), ticket.id))
        log.info("SLA sweep: ticket %s clock %s (%s) at risk, due %s", ticket.number, clock_id, clock.target,
                 isoformat(clock.due_at))

    # The notices of a batch are inserted with one flush; the keys read above skip any already queued.
    messages = [OutboxMessage(channel="supervisor", recipient=outbox.SUPERVISOR, body=body, idempotency_key=key,
                              ticket_id=ticket_id)
                for key, body, ticket_id in notices if key not in sent]
    session.add_all(messages)
    session.flush()
    for message in messages:
        outbox.schedule_job(session, "deliver_message", message.id)


def _check_one_by_one(runtime, ids: list[int], now: datetime) -> tuple[int, int, int]:
    breached = warned = failed = 0
    for clock_id in ids:
        try:
            with runtime.transaction() as session:
                one_breached, one_warned, _ = _check_batch(session, [clock_id], now)
            breached, warned = breached + one_breached, warned + one_warned
        except Exception:
            failed += 1
            log.exception("SLA sweep: clock %s could not be checked; next check in %s", clock_id, RETRY_DELAY)
            _push_back(runtime, clock_id, now)
    return breached, warned, failed


def _push_back(runtime, clock_id: int, now: datetime) -> None:
    try:
        with runtime.transaction() as session:
            session.execute(update(SlaClock).where(SlaClock.id == clock_id).values(next_check_at=now + RETRY_DELAY))
    except Exception:
        log.exception("SLA sweep: clock %s could not be pushed back either", clock_id)


def review_calendars(runtime, now: datetime) -> None:
    """Recompute provisional clocks once per runtime, then alert about years the calendars lack."""
    if not runtime.components.get(PROVISIONAL_REVIEWED):
        recompute_provisional(runtime, now)
        runtime.components[PROVISIONAL_REVIEWED] = True
    alert_missing_years(runtime, now)


def recompute_provisional(runtime, now: datetime) -> int:
    """Recompute every open provisional clock on the loaded calendars; return how many became final.

    Run at start-up (the first sweep of a process), because calendars.yaml is read at start-up: a
    year added to the file makes its provisional deadlines final here, with one `sla_recomputed` event each.
    """
    calendars = runtime.component("calendars")
    policies = runtime.component("sla_policies")
    finalised = 0
    with runtime.transaction() as session:
        clocks = session.exec(select(SlaClock).where(SlaClock.provisional.is_(True))
                              .where(SlaClock.state.in_(("running", "paused")))).all()
        for clock in clocks:
            calendar = calendars.get(clock.calendar)
            if calendar is None:
                continue
            previous_due = as_aware_utc(clock.due_at)
            schedule(clock, spec_of(clock, policies), calendar)
            if clock.breached_at is not None and as_aware_utc(clock.due_at) > now:
                clock.breached_at = None
            session.add(clock)
            if clock.provisional:
                continue
            finalised += 1
            record_event(session, session.get(Ticket, clock.ticket_id), kind="sla_recomputed", actor=SYSTEM,
                         at=now, reason="节假日数据已补充", from_value=isoformat(previous_due),
                         to_value=isoformat(clock.due_at),
                         data={"target": clock.target, "due_at": isoformat(clock.due_at), "provisional": False})
            log.info("SLA: clock %s no longer provisional, due %s (was %s)", clock.id, isoformat(clock.due_at),
                     isoformat(previous_due))
    return finalised


def alert_missing_years(runtime, now: datetime) -> int:
    """Queue one supervisor alert per year a calendar has met without holiday data; return how many are new.

    The years come from the calendars' own record of this process and from the open provisional
    clocks in the database. The outbox key `sla-calendar-year:<year>` keeps it to one alert per year
    across processes; a concurrent insert of the same key loses on the unique index and is ignored.
    """
    calendars = runtime.component("calendars")
    years = set()
    for calendar in calendars.values():
        years |= calendar.missing_years()
    with runtime.transaction() as session:
        for started, due in session.exec(
                select(SlaClock.started_at, SlaClock.due_at).where(SlaClock.provisional.is_(True))
                .where(SlaClock.state.in_(("running", "paused")))):
            tz = runtime.settings.timezone
            years |= set(range(as_aware_utc(started).astimezone(tz).year, as_aware_utc(due).astimezone(tz).year + 1))
    missing = sorted(year for year in years if not all(calendar.knows_year(year) for calendar in calendars.values()))

    added = 0
    for year in missing:
        body = (f"【59200496】节假日数据缺少 {year} 年：SLA 时限暂按仅周末休息计算并标为临时。"
                f"请在国务院办公厅发布 {year} 年放假安排（通常在前一年 11 月）后，把放假和调休上班日期写入 "
                f"routing_rules/calendars.yaml 的 years.{year}，然后重启服务。")
        try:
            with runtime.transaction() as session:
                if outbox.add_message(session, channel="supervisor", recipient=outbox.SUPERVISOR, body=body,
                                      idempotency_key=f"sla-calendar-year:{year}") is not None:
                    added += 1
                    log.warning("SLA: no holiday data for %s; supervisor alerted to add it to calendars.yaml", year)
        except IntegrityError:
            log.info("SLA: missing-year alert for %s already queued by another process", year)
    return added
