"""Operator queue benchmark: the queue pages and the ticket list with 50,000 open and 200,000 closed tickets.

Usage: .venv/bin/python scripts/bench/web.py [--database {postgresql,sqlite,both}] [--open 50000]
       [--closed 200000] [--duration 10] [--concurrency 8]

The steps below run once per backend, PostgreSQL first, each with its own throwaway database (both by
default, one with --database):

1. Creates the database: hotline_bench_<random> on 127.0.0.1:5432 (user postgres) for PostgreSQL, a file
   in a temporary folder for SQLite. Migrates it with the Alembic revisions, seeds towns, agencies and
   staff, adds 20 operators and 300 referrer accounts, and fills it (queue_fill.py): open and closed
   tickets whose priority, queue rank and reasons come from the real priority rules, their SLA clocks
   from the real policies and calendars, their events and referrals. Both backends get the same rows
   from the same seed. PostgreSQL loads them with COPY, then runs VACUUM ANALYZE, as autovacuum would
   have done on a database that has been running. SQLite loads them with executemany in transactions
   of 50,000 rows, then runs ANALYZE.
2. Explains the queries behind the queue page and the ticket list and prints the plans: EXPLAIN (ANALYZE,
   BUFFERS) on PostgreSQL; on SQLite EXPLAIN QUERY PLAN with the parameters bound as the application
   binds them, and the time of the query alone. It checks that the queue query reads
   ix_ticket_open_queue in queue order instead of sorting the open rows (a Sort node on PostgreSQL,
   "USE TEMP B-TREE FOR ORDER BY" on SQLite).
3. Starts gunicorn on a free loopback port with HOTLINE_DATABASE_URL pointing at that database and logs
   in as the seeded operator. It measures GET /healthz (the baseline), the queue page, the rows fragment
   that the page polls, a filtered queue (town + priority), the first page of GET /api/v1/tickets and a
   ticket page. For each, a closed loop of C keep-alive clients for D seconds gives the max rate. Then an
   open loop at half that rate gives the latency with queueing included (the load generator of intake.py).
4. Prints a table with each target's rate as a ratio of the /healthz rate, and PASS or FAIL for three
   targets: the queue page's rows query reads ix_ticket_open_queue without sorting, and the queue page
   p99 is under 300 ms and the rows fragment p99 under 150 ms, both at half their max rate.
5. Stops gunicorn by its PID and drops the database, also after Ctrl-C, SIGTERM or an error.

With both backends it ends with the PASS and FAIL lines of both. It exits 0 whether the targets pass or fail.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import psycopg

# intake.py and queue_fill.py sit beside this file, and Python puts a script's folder first on sys.path.
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
from queue_fill import FILTER_TOWN, PASSWORD, Fill, fill, postgresql_conninfo
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlmodel import select

from hotline import tickets
from hotline.models import Ticket
from hotline.store import make_engine, transaction
from hotline.web import queue as queue_web
from hotline.web.queue import QueueFilters

log = logging.getLogger("hotline.bench")

BACKENDS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
MAX_QUEUE_P99_MS = 300.0
MAX_ROWS_P99_MS = 150.0
FILTER_PRIORITY = "P3"
EXPLAIN_RUNS = 3
OPEN_QUEUE_INDEX = "ix_ticket_open_queue"
SQLITE_SORT = re.compile(r"^USE TEMP B-TREE FOR .*ORDER BY")
SQLITE_INDEX = re.compile(r"USING (?:COVERING )?INDEX (\w+)")


# --- query plans -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """The plan of one statement, the median time of the statement, whether it sorts and the indexes it reads."""

    label: str
    text: str
    milliseconds: float
    sorts: bool
    indexes: set[str]


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
        ("API first page, status=open", api_first_page.where(tickets.is_open())),
    ]


def explain(backend: str, database_url: str) -> list[Plan]:
    return explain_sqlite(database_url) if backend == "sqlite" else explain_postgresql(database_url)


def explain_postgresql(database_url: str) -> list[Plan]:
    """Run EXPLAIN (ANALYZE, BUFFERS) EXPLAIN_RUNS times per statement, keeping the last plan and the median time."""
    plans = []
    with psycopg.connect(postgresql_conninfo(database_url), autocommit=True) as connection:
        for label, statement in plan_statements():
            sql = str(statement.compile(dialect=postgresql.psycopg.dialect(),
                                        compile_kwargs={"literal_binds": True}))
            runs = [connection.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}").fetchone()[0][0]
                    for _ in range(EXPLAIN_RUNS)]
            text_plan = "\n".join(row[0] for row in connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))
            times = sorted(run["Execution Time"] for run in runs)
            nodes = list(walk(runs[-1]["Plan"]))
            node_types = {node["Node Type"] for node in nodes}
            plans.append(Plan(label, text_plan, times[len(times) // 2], bool(node_types & {"Sort", "Incremental Sort"}),
                              {node["Index Name"] for node in nodes if "Index Name" in node}))
    return plans


def walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def explain_sqlite(database_url: str) -> list[Plan]:
    """Run EXPLAIN QUERY PLAN on each statement, then time the statement alone EXPLAIN_RUNS times (median).

    The statements carry their parameters bound, as the application sends them: SQLite uses a partial
    index only when the query's own WHERE terms match the index's, and a bound parameter does not.
    """
    plans = []
    connection = sqlite3.connect(make_url(database_url).database)
    try:
        for label, statement in plan_statements():
            compiled = statement.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
            sql = str(compiled)
            parameters = tuple(compiled.params[name] for name in compiled.positiontup)
            rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
            details = [row[3] for row in rows]
            plans.append(Plan(label, format_query_plan(rows), median_milliseconds(connection, sql, parameters),
                              any(SQLITE_SORT.match(detail) for detail in details),
                              {match.group(1) for detail in details if (match := SQLITE_INDEX.search(detail))}))
    finally:
        connection.close()
    return plans


def format_query_plan(rows: list[tuple]) -> str:
    """Indent the (id, parent, notused, detail) rows of EXPLAIN QUERY PLAN by their depth in the plan tree."""
    depths = {0: -1}
    lines = []
    for node_id, parent, _notused, detail in rows:
        depths[node_id] = depths.get(parent, -1) + 1
        lines.append("  " * depths[node_id] + detail)
    return "\n".join(lines)


def median_milliseconds(connection: sqlite3.Connection, sql: str, parameters: tuple) -> float:
    times = []
    for _ in range(EXPLAIN_RUNS):
        started = time.perf_counter()
        connection.execute(sql, parameters).fetchall()
        times.append(1000 * (time.perf_counter() - started))
    return sorted(times)[len(times) // 2]


PLAN_METHODS = {
    "postgresql": f"EXPLAIN ANALYZE, median of {EXPLAIN_RUNS} runs",
    "sqlite": f"EXPLAIN QUERY PLAN, and the statement alone timed: median of {EXPLAIN_RUNS} runs",
}


def format_plans(backend: str, plans: list[Plan]) -> str:
    lines = [f"query plans ({PLAN_METHODS[backend]}):"]
    for plan in plans:
        indexes = ", ".join(sorted(plan.indexes)) or "none"
        lines.append(f"  {plan.label:<44}{plan.milliseconds:>8.2f} ms  sort: {'yes' if plan.sorts else 'no ':<4}"
                     f"indexes: {indexes}")
    queue_plan = plans[0]
    lines += ["", f"plan of the {queue_plan.label}:", queue_plan.text]
    return "\n".join(lines)


def format_plan_verdict(backend: str, plans: list[Plan]) -> str:
    """PASS when the queue page's rows query reads the open-queue index and does not sort."""
    queue_plan = plans[0]
    verdict = "PASS" if OPEN_QUEUE_INDEX in queue_plan.indexes and not queue_plan.sorts else "FAIL"
    read = ", ".join(sorted(queue_plan.indexes)) or "none"
    sorting = "sorts" if queue_plan.sorts else "no sort"
    return (f"{verdict}  {BACKENDS[backend]}: {queue_plan.label} read off {OPEN_QUEUE_INDEX} without sorting "
            f"(indexes read: {read}; {sorting})")


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
        f"(seed and build rows {result.generate_seconds:.1f} s, {result.load_step} {result.load_seconds:.1f} s, "
        f"{result.analyze_step} {result.analyze_seconds:.1f} s)",
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


def format_verdicts(backend: str, results: list[Result]) -> list[str]:
    by_label = {result.target.label: result for result in results}
    lines = []
    for label, limit in (("queue page", MAX_QUEUE_P99_MS), ("rows fragment", MAX_ROWS_P99_MS)):
        result = by_label[label]
        p99 = result.open.percentile_ms(0.99)
        verdict = "PASS" if p99 < limit else "FAIL"
        lines.append(f"{verdict}  {BACKENDS[backend]}: {label} p99 at half its max rate < {limit:.0f} ms "
                     f"({p99:.1f} ms at {result.open_rate:.1f} requests/s; closed-loop p99 "
                     f"{result.closed.percentile_ms(0.99):.1f} ms)")
    return lines


# The processes that share the machine's CPUs, per backend.
CPU_SHARING = {"postgresql": "server, PostgreSQL and clients",
               "sqlite": "server (SQLite runs in its workers) and clients"}


def format_report(args: argparse.Namespace, backend: str, version: str, filled: Fill, plans: list[Plan],
                  results: list[Result], sizes: dict[str, int],
                  loads: tuple[tuple[float, ...], tuple[float, ...]]) -> tuple[str, list[str]]:
    """Return the report of one backend and its PASS or FAIL lines, which the report ends with."""
    before, after = loads
    config = f" (config {args.gunicorn_config})" if args.gunicorn_config else ""
    settings = (f"gunicorn {args.workers} workers x {args.threads} threads{config}, {args.concurrency} clients, "
                f"{args.duration:g} s per run, {os.cpu_count()} CPUs shared by {CPU_SHARING[backend]}")
    load = (f"load average (1, 5, 15 min) before the run {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
            f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    open_note = (f"open loop: {2 * args.concurrency} client threads, arrivals evenly spaced at half the max rate, "
                 "latency counted from each scheduled send instant")
    verdicts = [format_plan_verdict(backend, plans), *format_verdicts(backend, results)]
    report = "\n".join([f"=== {version} ===", settings, load, format_fill(filled), "", format_plans(backend, plans),
                        "", open_note, "", format_table(results), "", format_ratios(results, sizes), "", *verdicts,
                        "", ""])
    return report, verdicts


# --- databases ---------------------------------------------------------------------------------------


@contextmanager
def bench_database(backend: str, work_dir: Path) -> Iterator[str]:
    """Yield the URL of an empty throwaway database, and drop it on the way out, also after an error.

    PostgreSQL gets a database hotline_bench_<random> on 127.0.0.1:5432. SQLite gets a file in `work_dir`,
    which goes with that folder.
    """
    if backend == "sqlite":
        yield f"sqlite:///{work_dir / 'queue-bench.sqlite3'}"
        return

    name = f"hotline_bench_{uuid.uuid4().hex[:10]}"
    database_url = create_database(name)
    try:
        yield database_url
    finally:
        drop_database(name)


def database_version(backend: str, database_url: str) -> str:
    if backend == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with psycopg.connect(postgresql_conninfo(database_url)) as connection:
        return f"PostgreSQL {connection.execute('SHOW server_version').fetchone()[0]}"


# --- entry point -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the operator queue with a large backlog.")
    parser.add_argument("--database", choices=(*BACKENDS, "both"), default="both",
                        help="the backend to fill and measure; both runs PostgreSQL, then SQLite")
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


def run(args: argparse.Namespace, backend: str, database_url: str, work_dir: Path,
        stop: threading.Event) -> tuple[str, list[str]]:
    """Build, fill and explain, then start gunicorn and measure. Gunicorn is stopped on the way out."""
    loads_before = os.getloadavg()
    build_schema(database_url)
    filled = fill(database_url, args.open, args.closed)
    plans = explain(backend, database_url)

    server = start_server(database_url, args, work_dir)
    try:
        wait_healthy(server)
        targets = build_targets(log_in(server.port, "operator"), filled.token, first_in_queue(database_url))
        sizes = {target.label: response_size(server.port, target) for target in targets}
        results = [measure(server.port, target, args, stop) for target in targets]
    finally:
        stop.set()
        stop_server(server)
    return format_report(args, backend, database_version(backend, database_url), filled, plans, results, sizes,
                         (loads_before, os.getloadavg()))


def run_backend(args: argparse.Namespace, backend: str) -> tuple[str, list[str]]:
    """Run one backend in its own work folder and throwaway database, with its own stop event."""
    log.info("Bench: measuring %s", BACKENDS[backend])
    stop = threading.Event()
    try:
        with tempfile.TemporaryDirectory(prefix="hotline-bench-") as work_dir, \
                bench_database(backend, Path(work_dir)) as database_url:
            return run(args, backend, database_url, Path(work_dir), stop)
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    # A shell starts background jobs with SIGINT ignored; restore Python's handler so cleanup still runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupt)

    backends = list(BACKENDS) if args.database == "both" else [args.database]
    verdicts = []
    try:
        for backend in backends:
            report, backend_verdicts = run_backend(args, backend)
            sys.stdout.write(report)
            sys.stdout.flush()
            verdicts += backend_verdicts
    except KeyboardInterrupt:
        log.warning("Bench: interrupted; the throwaway databases are dropped")
        return 130

    if len(backends) > 1:
        sys.stdout.write("\n".join(["=== all backends ===", *verdicts, ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
