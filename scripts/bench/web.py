"""Operator queue benchmark: the queue pages and the ticket list with 50,000 open and 200,000 closed tickets.

Usage: .venv/bin/python scripts/bench/web.py [--open 50000] [--closed 200000] [--duration 10] [--concurrency 8]

1. Creates a throwaway PostgreSQL database (hotline_bench_<random> on 127.0.0.1:5432, user postgres),
   migrates it, seeds towns, agencies and staff, adds 20 operators and 300 referrer accounts, and fills
   it with COPY: open and closed tickets whose priority, queue rank and reasons come from the real
   priority rules, their SLA clocks from the real policies and calendars, their events and referrals.
   Then VACUUM ANALYZE, as autovacuum would have done on a database that has been running.
2. Runs EXPLAIN (ANALYZE, BUFFERS) on the queries behind the queue page and the ticket list, prints the
   plans, and checks that the queue query reads an index in queue order instead of sorting the open rows.
3. Starts gunicorn on a free loopback port and logs in as the seeded operator. It measures GET /healthz
   (the baseline), the queue page, the rows fragment that the page polls, a filtered queue (town +
   priority), the first page of GET /api/v1/tickets and a ticket page. For each, a closed loop of C
   keep-alive clients for D seconds gives the max rate. Then an open loop at half that rate gives the
   latency with queueing included (the load generator of intake.py).
4. Prints a table with each target's rate as a ratio of the /healthz rate, and PASS or FAIL for three
   targets: the queue page's rows query reads an index without sorting, and the queue page p99 is
   under 300 ms and the rows fragment p99 under 150 ms, both at half their max rate. It exits 0
   whether the targets pass or fail.
5. Stops gunicorn by its PID and drops the database, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import psycopg

# intake.py sits beside this file, and Python puts a script's folder first on sys.path.
from intake import (
    HOST,
    PROJECT_ROOT,
    Result,
    Server,
    Target,
    build_schema,
    create_database,
    drop_database,
    format_table,
    free_port,
    measure,
    raise_interrupt,
    server_environment,
    stop_server,
    wait_healthy,
)
from sqlalchemy.dialects import postgresql
from sqlmodel import select
from werkzeug.security import generate_password_hash

from hotline import seed, tickets
from hotline.clock import SHANGHAI, now
from hotline.config import load_settings
from hotline.models import Agency, Ticket, Town, User
from hotline.rules.facts import ticket_facts
from hotline.runtime import build_runtime
from hotline.store import make_engine, transaction
from hotline.tokens import create_token
from hotline.vocabulary import OPEN_STATUSES
from hotline.web import queue as queue_web
from hotline.web.queue import QueueFilters

log = logging.getLogger("hotline.bench")

SEED = 59200496
PASSWORD = "bench-" + secrets.token_urlsafe(12)
MAX_QUEUE_P99_MS = 300.0
MAX_ROWS_P99_MS = 150.0
FILTER_TOWN = "310118002"  # 盈浦街道, the busiest town of the fill
FILTER_PRIORITY = "P3"
EXTRA_OPERATORS = 20
REFERRER_ACCOUNTS = 300
EXPLAIN_RUNS = 3

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
    copy_seconds: float
    vacuum_seconds: float
    by_priority: Counter
    by_status: Counter
    token: str

    @property
    def seconds(self) -> float:
        return self.generate_seconds + self.copy_seconds + self.vacuum_seconds


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
    """Build one slaclock row for COPY, or return None when the ticket's policy has no such target."""
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
    """Builder of the ticket, clock, event and referral rows for COPY, numbering tickets per local day."""

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


def fill(database_url: str, open_count: int, closed_count: int) -> Fill:
    """Fill the tickets and their rows with COPY in creation order, then run VACUUM ANALYZE."""
    began = time.perf_counter()
    staff, agencies, towns, token = add_staff(database_url)
    runtime = build_runtime(replace(load_settings(), database_url=database_url, redis_url=None),
                            queue=SimpleNamespace())
    maker = TicketMaker(Rules(runtime, towns), staff, agencies, now())
    runtime.engine.dispose()

    plan = sorted([maker.created(is_open=False) for _ in range(closed_count)] +
                  [maker.created(is_open=True) for _ in range(open_count)])
    built = [maker.make(ticket_id, created, is_open) for ticket_id, (created, is_open) in enumerate(plan, start=1)]
    clocks = [row for rows in built for row in rows[1]]
    events = [row for rows in built for row in rows[2]]
    referrals = [rows[3] for rows in built if rows[3]]
    built_at = time.perf_counter()

    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        copy_rows(cursor, f"COPY ticket ({TICKET_COLUMNS}) FROM STDIN", [rows[0] for rows in built])
        copy_rows(cursor, f"COPY slaclock ({CLOCK_COLUMNS}) FROM STDIN", clocks)
        copy_rows(cursor, f"COPY ticketevent ({EVENT_COLUMNS}) FROM STDIN", events)
        copy_rows(cursor, f"COPY referral ({REFERRAL_COLUMNS}) FROM STDIN", referrals)
        cursor.execute("SELECT setval('ticket_id_seq', %s)", (len(plan),))
        cursor.executemany("INSERT INTO ticketcounter (day, last) VALUES (%s, %s)", list(maker.day_counters.items()))
        connection.commit()
    copied_at = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    finished_at = time.perf_counter()

    result = Fill(tickets=len(built), open=open_count, clocks=len(clocks), events=len(events),
                  referrals=len(referrals), generate_seconds=built_at - began, copy_seconds=copied_at - built_at,
                  vacuum_seconds=finished_at - copied_at, by_priority=maker.by_priority, by_status=maker.by_status,
                  token=token)
    log.info("Bench: filled %s tickets in %.1f s", result.tickets, result.seconds)
    return result


def copy_rows(cursor, statement: str, rows: list[tuple]) -> None:
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


# --- query plans -------------------------------------------------------------------------------------


@dataclass
class Plan:
    label: str
    text: str
    milliseconds: float
    node_types: set[str]
    indexes: set[str]

    @property
    def sorts(self) -> bool:
        return bool(self.node_types & {"Sort", "Incremental Sort"})


def plan_statements() -> list[tuple[str, object]]:
    """Build the statements of the queue page and the ticket list with the application's own functions."""
    everything = QueueFilters()
    town_priority = QueueFilters(priority=int(FILTER_PRIORITY[1]), town=FILTER_TOWN)
    api_first_page = select(Ticket).order_by(*tickets.queue_order()).offset(0).limit(51)
    return [
        ("queue page rows", queue_web.rows_query(everything)),
        ("queue page count", queue_web.count_query(everything)),
        (f"filtered rows (town {FILTER_TOWN}, {FILTER_PRIORITY})", queue_web.rows_query(town_priority)),
        ("filtered count", queue_web.count_query(town_priority)),
        ("API first page, no filter", api_first_page),
        ("API first page, status=open", api_first_page.where(Ticket.status.in_(OPEN_STATUSES))),
    ]


def explain(database_url: str) -> list[Plan]:
    """Run EXPLAIN (ANALYZE, BUFFERS) EXPLAIN_RUNS times per statement, keeping the last plan and the median time."""
    plans = []
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for label, statement in plan_statements():
            sql = str(statement.compile(dialect=postgresql.psycopg.dialect(),
                                        compile_kwargs={"literal_binds": True}))
            runs = [connection.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}").fetchone()[0][0]
                    for _ in range(EXPLAIN_RUNS)]
            text_plan = "\n".join(row[0] for row in connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))
            times = sorted(run["Execution Time"] for run in runs)
            nodes = list(walk(runs[-1]["Plan"]))
            plans.append(Plan(label, text_plan, times[len(times) // 2], {node["Node Type"] for node in nodes},
                              {node["Index Name"] for node in nodes if "Index Name" in node}))
    return plans


def walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def format_plans(plans: list[Plan]) -> str:
    lines = [f"query plans (EXPLAIN ANALYZE, median of {EXPLAIN_RUNS} runs):"]
    for plan in plans:
        indexes = ", ".join(sorted(plan.indexes)) or "none"
        lines.append(f"  {plan.label:<44}{plan.milliseconds:>8.2f} ms  sort: {'yes' if plan.sorts else 'no ':<4}"
                     f"indexes: {indexes}")
    queue_plan = plans[0]
    lines += ["", f"plan of the {queue_plan.label}:", queue_plan.text]
    return "\n".join(lines)


def format_plan_verdict(plans: list[Plan]) -> str:
    """PASS when the queue page's rows query reads an index and has no sort node."""
    queue_plan = plans[0]
    verdict = "PASS" if queue_plan.indexes and not queue_plan.sorts else "FAIL"
    read = ", ".join(sorted(queue_plan.indexes)) or "no index"
    return f"{verdict}  {queue_plan.label} read off an index without sorting ({read})"


# --- server and login --------------------------------------------------------------------------------


def start_server(database_url: str, args: argparse.Namespace, work_dir: Path) -> Server:
    """Start gunicorn in its own session with a random secret key shared by its workers."""
    port = free_port()
    env = server_environment(database_url, work_dir)
    env["HOTLINE_SECRET_KEY"] = secrets.token_hex(32)
    command = [str(Path(sys.executable).with_name("gunicorn")), "hotline.wsgi:app", "--bind", f"{HOST}:{port}",
               "--workers", str(args.workers), "--threads", str(args.threads), "--log-level", "warning"]
    if args.gunicorn_config:
        command += ["--config", str(args.gunicorn_config.resolve())]
    log_path = work_dir / "gunicorn.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    log.info("Bench: started gunicorn pid %s on %s:%s (%s workers, %s threads each)", process.pid, HOST, port,
             args.workers, args.threads)
    return Server(process, port, log_path)


def log_in(port: int, username: str) -> str:
    """Log in through the login form and return the Cookie header value of the logged-in session."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", "/login")
        response = connection.getresponse()
        page = response.read().decode("utf-8")
        cookie = cookies(response)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if csrf is None:
            raise RuntimeError("the login page has no csrf_token field")
        form = urlencode({"csrf_token": csrf.group(1), "username": username, "password": PASSWORD})
        connection.request("POST", "/login", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        response = connection.getresponse()
        response.read()
        if response.status != 302:
            raise RuntimeError(f"logging in as {username} returned HTTP {response.status}, not a redirect")
        return cookies(response) or cookie
    finally:
        connection.close()


def cookies(response: http.client.HTTPResponse) -> str:
    """Join the name=value pairs of a response's Set-Cookie headers into one Cookie header value."""
    return "; ".join(header.split(";", 1)[0] for header in response.headers.get_all("Set-Cookie") or [])


def first_in_queue(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            return session.exec(queue_web.rows_query(QueueFilters())).first().number
    finally:
        engine.dispose()


def build_targets(cookie: str, token: str, ticket_number: str) -> list[Target]:
    page = {"Cookie": cookie, "Accept-Language": "zh-CN"}
    api = {"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"}
    filtered = urlencode({"town": FILTER_TOWN, "priority": FILTER_PRIORITY})

    def get(label: str, path: str, headers: dict[str, str]) -> Target:
        return Target(label, "GET", path, 200, lambda: None, headers)

    return [
        get("GET /healthz", "/healthz", {}),
        get("queue page", "/", page),
        get("rows fragment", "/queue/rows", page),
        get(f"queue town+{FILTER_PRIORITY}", f"/?{filtered}", page),
        get("API /api/v1/tickets", "/api/v1/tickets", api),
        get("API ?status=open", "/api/v1/tickets?status=open", api),
        get("ticket page", f"/tickets/{ticket_number}", page),
    ]


def response_size(port: int, target: Target) -> int:
    """Fetch the target once and return its body size in bytes. Raise RuntimeError on an unexpected status."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request(target.method, target.path, headers=target.headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != target.expected_status:
        raise RuntimeError(f"{target.label}: HTTP {response.status}: {body[:300].decode('utf-8', 'replace')}")
    return len(body)


# --- report ------------------------------------------------------------------------------------------


def format_fill(result: Fill) -> str:
    closed = result.tickets - result.open
    priorities = ", ".join(f"{name} {count:,}" for name, count in sorted(result.by_priority.items()))
    statuses = ", ".join(f"{name} {count:,}" for name, count in result.by_status.most_common())
    return "\n".join([
        f"fill: {result.tickets:,} tickets ({result.open:,} open, {closed:,} closed), {result.clocks:,} SLA clocks, "
        f"{result.events:,} events, {result.referrals:,} referrals in {result.seconds:.1f} s "
        f"(seed and build rows {result.generate_seconds:.1f} s, COPY {result.copy_seconds:.1f} s, "
        f"VACUUM ANALYZE {result.vacuum_seconds:.1f} s)",
        f"  by priority: {priorities}",
        f"  by status:   {statuses}",
    ])


def format_ratios(results: list[Result], sizes: dict[str, int]) -> str:
    bare = results[0].closed.rate
    lines = [f"{'target':<32}{'bytes':>9}{'max rate / healthz':>20}"]
    for result in results:
        ratio = result.closed.rate / bare if bare else float("nan")
        lines.append(f"{result.target.label:<32}{sizes[result.target.label]:>9,}{ratio:>20.3f}")
    return "\n".join(lines)


def format_verdicts(results: list[Result]) -> str:
    by_label = {result.target.label: result for result in results}
    lines = []
    for label, limit in (("queue page", MAX_QUEUE_P99_MS), ("rows fragment", MAX_ROWS_P99_MS)):
        result = by_label[label]
        p99 = result.open.percentile_ms(0.99)
        verdict = "PASS" if p99 < limit else "FAIL"
        lines.append(f"{verdict}  {label} p99 at half its max rate < {limit:.0f} ms "
                     f"({p99:.1f} ms at {result.open_rate:.1f} requests/s; closed-loop p99 "
                     f"{result.closed.percentile_ms(0.99):.1f} ms)")
    return "\n".join(lines)


def format_report(args: argparse.Namespace, filled: Fill, plans: list[Plan], results: list[Result],
                  sizes: dict[str, int], loads: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    before, after = loads
    config = f" (config {args.gunicorn_config})" if args.gunicorn_config else ""
    settings = (f"gunicorn {args.workers} workers x {args.threads} threads{config}, {args.concurrency} clients, "
                f"{args.duration:g} s per run, {os.cpu_count()} CPUs shared by server, PostgreSQL and clients")
    load = (f"load average (1, 5, 15 min) before the run {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
            f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    open_note = (f"open loop: {2 * args.concurrency} client threads, arrivals evenly spaced at half the max rate, "
                 "latency counted from each scheduled send instant")
    return "\n".join([settings, load, format_fill(filled), "", format_plans(plans), "", open_note, "",
                      format_table(results), "", format_ratios(results, sizes), "",
                      format_plan_verdict(plans), format_verdicts(results), ""])


# --- entry point -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the operator queue with a large backlog.")
    parser.add_argument("--open", type=int, default=50_000, help="open tickets in the fill")
    parser.add_argument("--closed", type=int, default=200_000, help="closed tickets in the fill")
    parser.add_argument("--duration", type=float, default=10, help="seconds per closed-loop and open-loop run")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop keep-alive clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per gunicorn worker; above 1 gunicorn uses the gthread worker")
    parser.add_argument("--gunicorn-config", type=Path, help="a gunicorn configuration file to start gunicorn with")
    args = parser.parse_args(argv)
    if args.open < 1 or args.closed < 0:
        parser.error("--open must be at least 1 and --closed at least 0")
    if args.duration <= 0 or args.concurrency < 1 or args.workers < 1 or args.threads < 1:
        parser.error("--duration must be above 0; --concurrency, --workers and --threads at least 1")
    return args


def run(args: argparse.Namespace, database_url: str, work_dir: Path, stop: threading.Event) -> str:
    """Build, fill and explain, then start gunicorn and measure. Gunicorn is stopped on the way out."""
    loads_before = os.getloadavg()
    build_schema(database_url)
    filled = fill(database_url, args.open, args.closed)
    plans = explain(database_url)

    server = start_server(database_url, args, work_dir)
    try:
        wait_healthy(server)
        targets = build_targets(log_in(server.port, "operator"), filled.token, first_in_queue(database_url))
        sizes = {target.label: response_size(server.port, target) for target in targets}
        results = [measure(server.port, target, args, stop) for target in targets]
    finally:
        stop.set()
        stop_server(server)
    return format_report(args, filled, plans, results, sizes, (loads_before, os.getloadavg()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    # A shell starts background jobs with SIGINT ignored; restore Python's handler so cleanup still runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupt)

    database_name = f"hotline_bench_{uuid.uuid4().hex[:10]}"
    database_url = create_database(database_name)
    stop = threading.Event()
    try:
        with tempfile.TemporaryDirectory(prefix="hotline-bench-") as work_dir:
            report = run(args, database_url, Path(work_dir), stop)
    except KeyboardInterrupt:
        log.warning("Bench: interrupted; dropping database %s", database_name)
        return 130
    finally:
        stop.set()
        drop_database(database_name)

    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
