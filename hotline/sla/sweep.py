"""The SLA sweep: warn about clocks close to their due instant, flag breached ones, send the supervisor a digest.

The query reads the partial index over running, unbreached clocks by next_check_at, which is a
clock's warning instant until it has been warned and its due instant after that, so its cost grows
with what is due, not with what is open. Several schedulers or processes may sweep at once safely.

The sweep also reviews the calendar data: once per process it recomputes the open clocks whose
deadline was provisional (a year the holiday data did not know), so dates added to calendars.yaml
take effect at the next start, and it alerts the supervisor once per year still missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from hotline import outbox, system_reasons
from hotline.clock import as_aware_utc, isoformat
from hotline.clock import now as clock_now
from hotline.events import SYSTEM, record_event
from hotline.models import SlaClock, Ticket, TicketEvent
from hotline.sla.clocks import next_check, schedule, spec_of
from hotline.sla.digest import BREACH, WARNING, FlaggedClock, queue_digest

log = logging.getLogger("hotline.sla")

# A clock whose check failed is looked at again this much later, so one bad row never stalls the sweep.
RETRY_DELAY = timedelta(minutes=5)
# Ids per UPDATE or SELECT statement; keeps every statement well under SQLite's bound-parameter limit.
BATCH_SIZE = 500
# Set in runtime.components once the provisional clocks have been recomputed on this runtime's calendars.
PROVISIONAL_REVIEWED = "sla_provisional_reviewed"
OPEN = (SlaClock.state == "running", SlaClock.breached_at.is_(None))
# The predicate of ix_sla_clock_provisional_open, written out as the index states it. PostgreSQL and
# SQLite use a partial index only when the query implies its condition. SQLAlchemy would write
# `provisional IS true` (PostgreSQL) or `provisional = 1` (SQLite) with the states as bound
# parameters, and both databases then scan every clock.
PROVISIONAL_OPEN = text("slaclock.provisional AND slaclock.state IN ('running', 'paused')")
CLAIMED = (SlaClock.id, SlaClock.ticket_id, SlaClock.target, SlaClock.owner, SlaClock.warn_at, SlaClock.due_at)


@dataclass(frozen=True)
class SweepResult:
    breached: int
    warned: int
    failed: int

    def __add__(self, other: SweepResult) -> SweepResult:
        return SweepResult(self.breached + other.breached, self.warned + other.warned, self.failed + other.failed)


def sweep_breaches(runtime, now: datetime | None = None, limit: int = 5000) -> int:
    """Run one sweep and return how many clocks it flagged as breached."""
    return sweep(runtime, now, limit).breached


def sweep(runtime, now: datetime | None = None, limit: int = 5000) -> SweepResult:
    """Review the calendars, then check up to `limit` clocks whose next check is due.

    All due clocks are checked in one transaction, with a few set-based statements per BATCH_SIZE ids:
      1. claim the breached ones with a conditional UPDATE that sets breached_at = due_at only where
         breached_at is still NULL and due_at <= now; the RETURNING rows are this transaction's to
         report, so a concurrent sweep that updates the same rows later claims none of them;
      2. claim the warned ones the same way on warned_at IS NULL and warn_at <= now;
      3. read the claimed clocks' ticket numbers, insert one `sla_breached` or `sla_warning` event per
         claimed clock with one executemany INSERT, and queue one supervisor digest per kind
         (hotline.sla.digest), so 10,000 breaches make one notice, not 10,000;
      4. move next_check_at of clocks checked early (a stale next check) to their next instant.
    If the transaction fails, its clocks are split in two halves, each checked in its own transaction,
    down to single clocks. A clock that fails alone is logged with its id and its next check moves
    RETRY_DELAY forward, and the sweep goes on. One bad clock costs about two transactions per
    halving, and the halves that succeed each send their own digests.
    """
    now = now or clock_now()
    review_calendars(runtime, now)

    # Sorted by id, so a failing half is logged as an id range.
    ids = sorted(_due_ids(runtime, now, limit))
    result = _check(runtime, ids, now) if ids else SweepResult(breached=0, warned=0, failed=0)

    if result.breached or result.warned or result.failed:
        log.info("SLA sweep: %s breached, %s warned, %s failed at %s", result.breached, result.warned,
                 result.failed, isoformat(now))
    return result


def _due_ids(runtime, now: datetime, limit: int) -> list[int]:
    with runtime.transaction() as session:
        return list(session.exec(
            select(SlaClock.id).where(*OPEN).where(SlaClock.next_check_at <= now)
            .order_by(SlaClock.next_check_at).limit(limit)
        ))


def _check(runtime, ids: list[int], now: datetime) -> SweepResult:
    try:
        with runtime.transaction() as session:
            return _check_batch(session, ids, now)
    except Exception as error:
        if len(ids) == 1:
            log.exception("SLA sweep: clock %s could not be checked; next check in %s", ids[0], RETRY_DELAY)
            _push_back(runtime, ids[0], now)
            return SweepResult(breached=0, warned=0, failed=1)
        # The traceback is logged once, with the clock that fails alone.
        log.warning("SLA sweep: %s clocks (ids %s to %s) failed together (%s: %s); checking them in two halves",
                    len(ids), ids[0], ids[-1], type(error).__name__, error)

    middle = len(ids) // 2
    return _check(runtime, ids[:middle], now) + _check(runtime, ids[middle:], now)


def _check_batch(session: Session, ids: list[int], now: datetime) -> SweepResult:
    breached_rows, warned_rows = [], []
    for chunk in _chunks(ids):
        just_breached = _claim_breached(session, chunk, now)
        breached_rows += just_breached
        # A clock breached just now is no longer open, so only the others can still be warned.
        claimed = {row.id for row in just_breached}
        warn_candidates = [clock_id for clock_id in chunk if clock_id not in claimed]
        if warn_candidates:
            warned_rows += _claim_warned(session, warn_candidates, now)
    breached = _with_numbers(session, breached_rows)
    warned = _with_numbers(session, warned_rows)

    _record_events(session, breached, warned, now)
    queue_digest(session, BREACH, breached, now)
    queue_digest(session, WARNING, warned, now)
    _log_flagged(breached, warned)

    claimed = {clock.clock_id for clock in breached} | {clock.clock_id for clock in warned}
    _reschedule_stale(session, [clock_id for clock_id in ids if clock_id not in claimed], now)
    return SweepResult(breached=len(breached), warned=len(warned), failed=0)


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH_SIZE):
        yield ids[start:start + BATCH_SIZE]


def _claim_breached(session: Session, ids: list[int], now: datetime) -> list:
    return list(session.execute(
        update(SlaClock).where(SlaClock.id.in_(ids)).where(*OPEN).where(SlaClock.due_at <= now)
        .values(breached_at=SlaClock.due_at, next_check_at=SlaClock.due_at).returning(*CLAIMED),
        execution_options={"synchronize_session": False},
    ))


def _claim_warned(session: Session, ids: list[int], now: datetime) -> list:
    return list(session.execute(
        update(SlaClock).where(SlaClock.id.in_(ids)).where(*OPEN).where(SlaClock.warned_at.is_(None))
        .where(SlaClock.warn_at <= now).values(warned_at=now, next_check_at=SlaClock.due_at).returning(*CLAIMED),
        execution_options={"synchronize_session": False},
    ))


def _with_numbers(session: Session, rows: list) -> list[FlaggedClock]:
    """Attach each claimed clock's ticket number; a clock whose ticket is missing fails the transaction."""
    ticket_ids = sorted({row.ticket_id for row in rows})
    numbers = {}
    for chunk in _chunks(ticket_ids):
        numbers.update(tuple(row) for row in session.execute(
            select(Ticket.id, Ticket.number).where(Ticket.id.in_(chunk))))

    flagged = []
    for row in rows:
        if row.ticket_id not in numbers:
            raise LookupError(f"SLA clock {row.id} belongs to ticket {row.ticket_id}, which does not exist")
        flagged.append(FlaggedClock(clock_id=row.id, ticket_id=row.ticket_id, number=numbers[row.ticket_id],
                                    target=row.target, owner=row.owner, warn_at=row.warn_at, due_at=row.due_at))
    return flagged


def _record_events(session: Session, breached: list[FlaggedClock], warned: list[FlaggedClock], now: datetime) -> None:
    """Insert one event per flagged clock with one executemany INSERT, without building an ORM object per row."""
    events = [_event(clock, "sla_breached", now, {"target": clock.target, "due_at": isoformat(clock.due_at)})
              for clock in breached]
    events += [_event(clock, "sla_warning", now, {"target": clock.target, "owner": clock.owner,
                                                  "warn_at": isoformat(clock.warn_at),
                                                  "due_at": isoformat(clock.due_at)})
               for clock in warned]
    if events:
        session.execute(insert(TicketEvent.__table__), events)


def _event(clock: FlaggedClock, kind: str, now: datetime, data: dict) -> dict:
    return {"ticket_id": clock.ticket_id, "at": now, "actor": SYSTEM, "kind": kind, "from_value": None,
            "to_value": None, "reason": None, "data": data}


def _log_flagged(breached: list[FlaggedClock], warned: list[FlaggedClock]) -> None:
    for clock in breached:
        log.warning("SLA sweep: ticket %s clock %s (%s) breached, due %s", clock.number, clock.clock_id,
                    clock.target, isoformat(clock.due_at))
    for clock in warned:
        log.info("SLA sweep: ticket %s clock %s (%s) at risk, due %s", clock.number, clock.clock_id, clock.target,
                 isoformat(clock.due_at))


def _reschedule_stale(session: Session, ids: list[int], now: datetime) -> None:
    """Give clocks checked before anything was due (their next check was stale) their next instant."""
    for chunk in _chunks(ids):
        for clock in session.exec(select(SlaClock).where(SlaClock.id.in_(chunk)).where(*OPEN)):
            clock.next_check_at = max(next_check(clock), now + timedelta(seconds=1))
            session.add(clock)


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
        clocks = session.exec(select(SlaClock).where(PROVISIONAL_OPEN)).all()
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
                         at=now, reason=system_reasons.HOLIDAY_DATA_ADDED, from_value=isoformat(previous_due),
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
                select(SlaClock.started_at, SlaClock.due_at).where(PROVISIONAL_OPEN)):
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
