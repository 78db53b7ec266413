"""The fill of the operator queue benchmark: what a year of a busy hotline leaves in the database.

`fill()` seeds the staff and builds every ticket, SLA clock, event and referral row in Python from one
seeded random generator, the project's priority rules, SLA policies and calendars. Only the loading step
depends on the backend: PostgreSQL gets COPY and VACUUM ANALYZE, SQLite gets executemany inserts in large
transactions and ANALYZE. So both backends hold the same rows for the same seed and sizes.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import SimpleNamespace

import psycopg
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlmodel import select
from sqlmodel.sql.sqltypes import UTCDateTime
from werkzeug.security import generate_password_hash

from hotline import seed
from hotline.clock import SHANGHAI, now
from hotline.config import load_settings
from hotline.models import Agency, Referral, SlaClock, Ticket, TicketCounter, TicketEvent, Town, User
from hotline.rules.facts import ticket_facts
from hotline.runtime import build_runtime
from hotline.store import make_engine, transaction
from hotline.tokens import create_token

log = logging.getLogger("hotline.bench")

SEED = 59200496
PASSWORD = "bench-" + secrets.token_urlsafe(12)
FILTER_TOWN = "310118002"  # 盈浦街道, the busiest town of the fill
EXTRA_OPERATORS = 20
REFERRER_ACCOUNTS = 300

# --- the fill: what a year of a busy hotline leaves behind ----------------------------------------------

OPEN_STATUS_WEIGHTS = {"new": 20, "in_progress": 42, "waiting": 15, "dispatching": 5, "dispatched": 18}
CLOSED_STATUS_WEIGHTS = {"closed": 84, "resolved": 10, "cancelled": 6}
SOURCE_WEIGHTS = {"resident": 55, "community_worker": 15, "elderly_advisor": 12, "shequyun": 10,
                  "assistance_advisor": 8}
CATEGORY_WEIGHTS = {"consultation": 40, "agency_service": 25, "assisted_application": 14, "eco_burial": 8,
                    "callback": 7, "complaint": 6}
# Town codes with invented weights, larger for the more populous towns. None is a phone call that gave no town.
TOWN_WEIGHTS = {"310118002": 16, "310118001": 12, "310118106": 12, "310118107": 9, "310118003": 9,
                "310118105": 8, "310118102": 8, "310118110": 7, "310118103": 5, "310118104": 5,
                "310118109": 3, None: 6}
CATEGORY_NEEDS = {
    "agency_service": [["body_transport"], ["body_transport", "funeral_arrangement"], ["funeral_arrangement"],
                       ["ash_storage"]],
    "consultation": [[], ["subsidy_info"], ["death_procedures"], ["ash_storage"]],
    "assisted_application": [["death_procedures"], ["death_procedures", "subsidy_info"]],
    "eco_burial": [["eco_burial"]],
    "callback": [[]],
    "complaint": [[]],
}
FLAG_CHOICES = [[]] * 80 + [["solitary_elderly"]] * 7 + [["low_income"]] * 5 + [["childless_elderly"]] * 2 + \
    [["no_smartphone"]] * 4 + [["disabled"]] * 2
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗沈顾陆钱"
GIVEN_NAMES = ["伟", "芳", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
               "超", "秀兰", "霞", "平", "建华", "桂英", "玉兰", "国强"]
NOTES = ["询问骨灰寄存期限和费用。", "家属要求尽快安排接运。", "咨询丧葬补贴申领材料。", "老人独居，邻居代为来电。",
         "询问海葬批次和报名方式。", "要求回电说明办理进度。", None, None]
STATUS_REASONS = {"waiting": "等待家属回电确认", "resolved": "已答复来电人", "closed": "回访完成",
                  "cancelled": "家属已自行办理"}


@dataclass
class Fill:
    """The counts and the mix of the filled rows, with the time of each fill step."""

    tickets: int
    open: int
    clocks: int
    events: int
    referrals: int
    generate_seconds: float
    load_step: str
    load_seconds: float
    analyze_step: str
    analyze_seconds: float
    by_priority: Counter
    by_status: Counter
    token: str

    @property
    def seconds(self) -> float:
        return self.generate_seconds + self.load_seconds + self.analyze_seconds


class Picker:
    """Weighted choices from one seeded random generator, so that every run fills a nearly identical mix."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def weighted(self, weights: dict):
        return self.rng.choices(list(weights), weights=list(weights.values()))[0]

    def phone(self) -> str:
        return f"+861{self.rng.choice('35789')}{self.rng.randrange(10**9):09d}"

    def name(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN_NAMES)


class Rules:
    """The project's own priority rules, SLA policies and calendars, with decisions cached per profile."""

    def __init__(self, runtime, towns: dict[str, Town]):
        self.engine = runtime.component("rules")
        self.policies = runtime.component("sla_policies")
        self.calendars = runtime.component("calendars")
        self.towns = towns
        self._decisions: dict[tuple, tuple] = {}

    def decide(self, profile: dict) -> tuple:
        """Return (priority, queue_rank, reasons, trace, version, tags, policy) for a ticket profile.

        Reasons, trace and tags come back as JSON text, shared by every ticket of the same profile.
        """
        key = (profile["category"], profile["channel"], profile["source"], tuple(profile["needs"]),
               tuple(profile["flags"]), profile["town_code"])
        if key not in self._decisions:
            ticket = SimpleNamespace(number="bench", priority=4, tags=[], **profile)
            town = self.towns.get(profile["town_code"]) if profile["town_code"] else None
            facts = ticket_facts(ticket, town=town)
            decision = self.engine.evaluate_priority(facts)
            facts["priority"] = float(decision.priority)
            policy = self.policies.choose(facts)
            self._decisions[key] = (decision.priority, decision.queue_rank,
                                    json.dumps(decision.reasons, ensure_ascii=False),
                                    json.dumps(decision.trace, ensure_ascii=False), decision.version,
                                    json.dumps(sorted(decision.added_tags)), policy)
        return self._decisions[key]


@dataclass
class Clock:
    """An SLA clock of the fill before its policy gives it a due instant."""

    target: str
    started_at: datetime
    state: str
    met_at: datetime | None = None
    paused_at: datetime | None = None


def ticket_clocks(status: str, created: datetime, finished: datetime | None, rng: random.Random,
                  at: datetime) -> list[Clock]:
    """Build the clocks that the life of a ticket in `status` would have left behind by `at`."""
    answered = min(created + timedelta(minutes=rng.randint(2, 90)), at)
    if status == "new":
        return [Clock("first_response", created, "running"), Clock("resolution", created, "running")]
    clocks = [Clock("first_response", created, "met", met_at=answered)]
    if status in ("in_progress", "dispatching", "dispatched"):
        clocks.append(Clock("resolution", created, "running"))
    if status == "waiting":
        paused_at = max(answered, at - timedelta(hours=rng.randint(1, 72)))
        clocks.append(Clock("resolution", created, "paused", paused_at=paused_at))
    if status == "dispatching":
        clocks.append(Clock("dispatch_accept", answered, "running"))
    if status == "dispatched":
        accepted = min(answered + timedelta(minutes=rng.randint(3, 25)), at)
        clocks += [Clock("dispatch_accept", answered, "met", met_at=accepted), Clock("on_site", accepted, "running")]
    if status in ("resolved", "closed"):
        clocks.append(Clock("resolution", created, "met", met_at=finished))
        follow_up_done = min(finished + timedelta(days=rng.randint(1, 4)), at)
        clocks.append(Clock("follow_up", finished, "running" if status == "resolved" else "met",
                            met_at=None if status == "resolved" else follow_up_done))
    if status == "cancelled":
        clocks.append(Clock("resolution", created, "cancelled"))
    return clocks


def clock_row(ticket_id: int, clock: Clock, policy, priority: int, calendars, at: datetime) -> tuple | None:
    """Build one slaclock row for the loaders, or return None when the ticket's policy has no such target."""
    spec = policy.targets_for(priority).get(clock.target)
    if spec is None:
        return None
    calendar = calendars[spec.calendar]
    deadline = calendar.add(clock.started_at, spec.duration_seconds)
    warning = calendar.add(clock.started_at, spec.warn_offset_seconds) if spec.warn_offset_seconds else None
    warn_at = warning.due_at if warning else None
    reference = clock.met_at or clock.paused_at or at
    breached_at = deadline.due_at if clock.state != "cancelled" and deadline.due_at <= reference else None
    warned_at = warn_at if warn_at and warn_at <= reference and clock.state != "cancelled" else None
    next_check = warn_at if warn_at and warned_at is None and warn_at < deadline.due_at else deadline.due_at
    return (ticket_id, clock.target, policy.id, spec.calendar, spec.duration_seconds, clock.started_at,
            deadline.due_at, clock.state, clock.paused_at, 0, breached_at, clock.met_at,
            deadline.provisional or bool(warning and warning.provisional), spec.owner, warn_at, warned_at,
            next_check if clock.state == "running" else None)


class TicketMaker:
    """Builder of the ticket, clock, event and referral rows for the loaders, numbering tickets per local day."""

    def __init__(self, rules: Rules, staff_ids: list[int], agency_ids: list[int], at: datetime):
        self.rules, self.staff_ids, self.agency_ids, self.at = rules, staff_ids, agency_ids, at
        self.rng = random.Random(SEED)
        self.pick = Picker(self.rng)
        self.day_counters: Counter = Counter()
        self.by_priority: Counter = Counter()
        self.by_status: Counter = Counter()

    def profile(self) -> dict:
        source = self.pick.weighted(SOURCE_WEIGHTS)
        category = self.pick.weighted(CATEGORY_WEIGHTS)
        if source != "resident" and category == "callback":
            category = "consultation"
        town = self.pick.weighted(TOWN_WEIGHTS)
        if town is None and source != "resident":
            town = FILTER_TOWN
        channel = "phone" if source == "resident" else ("shequyun" if source == "shequyun" else
                                                         self.rng.choice(["referral_api", "portal"]))
        return {"source": source, "category": category, "channel": channel, "town_code": town,
                "needs": self.rng.choice(CATEGORY_NEEDS[category]), "flags": self.rng.choice(FLAG_CHOICES)}

    def number(self, created: datetime) -> str:
        day = created.astimezone(SHANGHAI).strftime("%Y%m%d")
        self.day_counters[day] += 1
        return f"QP-{day}-{self.day_counters[day]:04d}"

    def created(self, is_open: bool) -> tuple[datetime, bool]:
        """Draw when a ticket was opened: open ones mostly in the last week, closed ones over the past year."""
        if is_open:
            age = timedelta(minutes=int(self.rng.expovariate(1 / (6 * 24 * 60))) + 1)
        else:
            age = timedelta(days=self.rng.uniform(8, 365))
        return (self.at - age).replace(microsecond=0), is_open

    def make(self, ticket_id: int, created: datetime, is_open: bool) -> tuple[tuple, list, list, tuple | None]:
        """Return the ticket row, its clock rows, its event rows and its referral row (or None)."""
        profile = self.profile()
        priority, rank, reasons, trace, version, tags, policy = self.rules.decide(profile)
        status = self.pick.weighted(OPEN_STATUS_WEIGHTS if is_open else CLOSED_STATUS_WEIGHTS)
        finished = None if is_open else created + timedelta(hours=self.rng.uniform(1, 120))
        self.by_priority[f"P{priority}"] += 1
        self.by_status[status] += 1

        clocks = [row for clock in ticket_clocks(status, created, finished, self.rng, self.at)
                  if (row := clock_row(ticket_id, clock, policy, priority, self.rules.calendars, self.at))]
        running = [row[6] for row in clocks if row[7] == "running"]
        assigned = None if status == "new" else self.rng.choice(self.staff_ids)
        claimed = min(created + timedelta(minutes=self.rng.randint(2, 90)), self.at) if assigned else None
        agency = self.rng.choice(self.agency_ids) if status == "dispatched" or (
            finished and "body_transport" in profile["needs"]) else None
        number = self.number(created)
        external_id = f"{profile['source'][:3].upper()}-{ticket_id:08d}" if profile["source"] != "resident" else None
        town_name = self.rules.towns[profile["town_code"]].name if profile["town_code"] else None
        committee = f"{town_name[:2]}第{self.rng.randint(1, 30)}居委会" if town_name else None
        row = (ticket_id, number, profile["channel"], profile["source"], profile["category"],
               json.dumps(profile["needs"]), json.dumps(profile["flags"]), tags, profile["town_code"], committee,
               f"{town_name or '青浦区'}{self.rng.randint(1, 300)}弄{self.rng.randint(1, 60)}号",
               self.pick.name(), self.pick.phone(), self.rng.choice(NOTES), external_id, priority, rank,
               reasons, trace, version, status,
               min(running) if running else None, assigned, claimed, agency, created,
               max(filter(None, [created, claimed, finished])), finished)
        events = self.events(ticket_id, profile, status, created, assigned, claimed, finished)
        return row, clocks, events, self.referral(ticket_id, profile, external_id, committee, created)

    def events(self, ticket_id: int, profile: dict, status: str, created: datetime, assigned: int | None,
               claimed: datetime | None, finished: datetime | None) -> list[tuple]:
        source_actor = "twilio" if profile["source"] == "resident" else f"source:{profile['source']}"
        rows = [(ticket_id, created, source_actor, "created", None, profile["category"], None, None)]
        if assigned is None:
            return rows
        actor = f"user:{assigned}"
        rows.append((ticket_id, claimed, actor, "claimed", None, str(assigned), None, None))
        rows.append((ticket_id, finished or claimed, actor, "status", "new", status, STATUS_REASONS.get(status), None))
        return rows

    def referral(self, ticket_id: int, profile: dict, external_id: str | None, committee: str | None,
                 created: datetime) -> tuple | None:
        if external_id is None:
            return None
        return (profile["source"], external_id, ticket_id, self.pick.name(), self.pick.phone(), committee,
                json.dumps({"category": profile["category"]}), created)


TICKET_COLUMNS = ("id, number, channel, source, category, needs, flags, tags, town_code, committee, address, "
                  "caller_name, caller_phone, note, external_id, priority, queue_rank, priority_reasons, rule_trace, "
                  "rule_set_version, status, due_at, assigned_to_id, claimed_at, agency_id, created_at, updated_at, "
                  "resolved_at")
CLOCK_COLUMNS = ("ticket_id, target, policy, calendar, duration_seconds, started_at, due_at, state, paused_at, "
                 "paused_seconds, breached_at, met_at, provisional, owner, warn_at, warned_at, next_check_at")
EVENT_COLUMNS = "ticket_id, at, actor, kind, from_value, to_value, reason, data"
REFERRAL_COLUMNS = ("source, external_id, ticket_id, referrer_name, referrer_phone, referrer_org, payload, "
                    "received_at")


def add_staff(database_url: str) -> tuple[list[int], list[int], dict[str, Town], str]:
    """Seed towns, agencies, the demo staff, more operators and referrers, and an operator API token.

    Return the ids of the staff who work tickets, the agency ids, the towns by code and the token.
    """
    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            seed.seed_towns(session)
            seed.seed_agencies(session, licence_expires_on=now().date() + timedelta(days=365))
            seed.seed_users(session, PASSWORD)
            password_hash = generate_password_hash(PASSWORD)
            for index in range(EXTRA_OPERATORS):
                session.add(User(username=f"operator{index + 2:02d}", display_name=f"话务员 {index + 2:02d}",
                                 role="operator", password_hash=password_hash))
            towns = {town.code: town for town in session.exec(select(Town)).all()}
            # user.role is VARCHAR(16), so PostgreSQL rejects the 18-character role "assistance_advisor".
            roles = ("elderly_advisor", "community_worker")
            for index in range(REFERRER_ACCOUNTS):
                code = list(towns)[index % len(towns)]
                session.add(User(username=f"referrer{index:03d}", display_name=f"转介人 {index:03d}",
                                 role=roles[index % 2], password_hash=password_hash, town_code=code,
                                 committee=f"{towns[code].name[:2]}第{index % 30 + 1}居委会"))
            session.flush()
            staff = session.exec(select(User.id).where(User.role.in_(("operator", "supervisor")))).all()
            agencies = session.exec(select(Agency.id)).all()
            operator = session.exec(select(User).where(User.username == "operator")).one()
            token = create_token(session, "queue benchmark", role="operator", user_id=operator.id)
            return list(staff), list(agencies), towns, token
    finally:
        engine.dispose()


@dataclass
class Rows:
    """The generated rows of each table, in the column order of TICKET_COLUMNS, CLOCK_COLUMNS and so on."""

    tickets: list[tuple]
    clocks: list[tuple]
    events: list[tuple]
    referrals: list[tuple]
    counters: list[tuple[str, int]]


@dataclass(frozen=True)
class Loader:
    """The two steps that put the rows into one backend and refresh its planner statistics, with their names."""

    load_step: str
    load: Callable[[str, Rows], None]
    analyze_step: str
    analyze: Callable[[str], None]


def fill(database_url: str, open_count: int, closed_count: int) -> Fill:
    """Build the rows in creation order, then load them and analyze with the loader of the database's backend."""
    loader = LOADERS[make_url(database_url).get_backend_name()]
    began = time.perf_counter()
    staff, agencies, towns, token = add_staff(database_url)
    runtime = build_runtime(replace(load_settings(), database_url=database_url, redis_url=None),
                            queue=SimpleNamespace())
    maker = TicketMaker(Rules(runtime, towns), staff, agencies, now())
    runtime.engine.dispose()

    plan = sorted([maker.created(is_open=False) for _ in range(closed_count)] +
                  [maker.created(is_open=True) for _ in range(open_count)])
    built = [maker.make(ticket_id, created, is_open) for ticket_id, (created, is_open) in enumerate(plan, start=1)]
    rows = Rows(tickets=[rows[0] for rows in built], clocks=[row for rows in built for row in rows[1]],
                events=[row for rows in built for row in rows[2]], referrals=[rows[3] for rows in built if rows[3]],
                counters=list(maker.day_counters.items()))
    built_at = time.perf_counter()

    loader.load(database_url, rows)
    loaded_at = time.perf_counter()
    loader.analyze(database_url)
    finished_at = time.perf_counter()

    result = Fill(tickets=len(rows.tickets), open=open_count, clocks=len(rows.clocks), events=len(rows.events),
                  referrals=len(rows.referrals), generate_seconds=built_at - began, load_step=loader.load_step,
                  load_seconds=loaded_at - built_at, analyze_step=loader.analyze_step,
                  analyze_seconds=finished_at - loaded_at, by_priority=maker.by_priority, by_status=maker.by_status,
                  token=token)
    log.info("Bench: filled %s tickets in %.1f s", result.tickets, result.seconds)
    return result


# --- PostgreSQL: COPY, then VACUUM ANALYZE ---------------------------------------------------------------


def postgresql_conninfo(database_url: str) -> str:
    return database_url.replace("postgresql+psycopg://", "postgresql://")


def copy_into_postgresql(database_url: str, rows: Rows) -> None:
    """Load the rows with COPY in one transaction and move the ticket id sequence past the last id."""
    with psycopg.connect(postgresql_conninfo(database_url)) as connection, connection.cursor() as cursor:
        copy_rows(cursor, f"COPY ticket ({TICKET_COLUMNS}) FROM STDIN", rows.tickets)
        copy_rows(cursor, f"COPY slaclock ({CLOCK_COLUMNS}) FROM STDIN", rows.clocks)
        copy_rows(cursor, f"COPY ticketevent ({EVENT_COLUMNS}) FROM STDIN", rows.events)
        copy_rows(cursor, f"COPY referral ({REFERRAL_COLUMNS}) FROM STDIN", rows.referrals)
        cursor.execute("SELECT setval('ticket_id_seq', %s)", (len(rows.tickets),))
        cursor.executemany("INSERT INTO ticketcounter (day, last) VALUES (%s, %s)", rows.counters)
        connection.commit()


def copy_rows(cursor, statement: str, rows: list[tuple]) -> None:
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def vacuum_analyze_postgresql(database_url: str) -> None:
    """Run VACUUM ANALYZE, as autovacuum would have done on a database that has been running."""
    with psycopg.connect(postgresql_conninfo(database_url), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


# --- SQLite: executemany in large transactions, then ANALYZE ---------------------------------------------

SQLITE_ROWS_PER_TRANSACTION = 50_000


def insert_into_sqlite(database_url: str, rows: Rows) -> None:
    """Load the rows with executemany, SQLITE_ROWS_PER_TRANSACTION rows per transaction.

    SQLite has no sequence to move: the next ticket id is the largest id plus one.
    """
    connection = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        insert_rows(connection, Ticket, TICKET_COLUMNS, rows.tickets)
        insert_rows(connection, SlaClock, CLOCK_COLUMNS, rows.clocks)
        insert_rows(connection, TicketEvent, EVENT_COLUMNS, rows.events)
        insert_rows(connection, Referral, REFERRAL_COLUMNS, rows.referrals)
        insert_rows(connection, TicketCounter, "day, last", rows.counters)
    finally:
        connection.close()


def insert_rows(connection: sqlite3.Connection, model, columns: str, rows: list[tuple]) -> None:
    """Insert `rows` into the table of `model`, with the instants stored as the application stores them.

    The sqlite3 module would store an aware datetime as ISO text with its offset. The column type's own
    bind processor stores UTC text without one, which is what the application writes, compares and sorts.
    """
    converters = instant_converters(model, columns)
    statement = (f"INSERT INTO {model.__tablename__} ({columns}) "
                 f"VALUES ({', '.join('?' for _ in converters)})")
    for start in range(0, len(rows), SQLITE_ROWS_PER_TRANSACTION):
        batch = [convert_row(row, converters) for row in rows[start:start + SQLITE_ROWS_PER_TRANSACTION]]
        connection.execute("BEGIN")
        connection.executemany(statement, batch)
        connection.execute("COMMIT")


def instant_converters(model, columns: str) -> list[Callable | None]:
    """Return the SQLite bind processor of each instant column in `columns`, and None for the other columns."""
    dialect = sqlite.dialect()
    types = [model.__table__.c[name].type for name in columns.split(", ")]
    # dialect_impl() adds SQLite's DATETIME formatting to UTCDateTime's conversion to UTC.
    return [column_type.dialect_impl(dialect).bind_processor(dialect) if isinstance(column_type, UTCDateTime) else None
            for column_type in types]


def convert_row(row: tuple, converters: list[Callable | None]) -> tuple:
    return tuple(value if convert is None else convert(value) for convert, value in zip(converters, row, strict=True))


def analyze_sqlite(database_url: str) -> None:
    connection = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        connection.execute("ANALYZE")
    finally:
        connection.close()


LOADERS = {
    "postgresql": Loader("COPY", copy_into_postgresql, "VACUUM ANALYZE", vacuum_analyze_postgresql),
    "sqlite": Loader("INSERT", insert_into_sqlite, "ANALYZE", analyze_sqlite),
}
