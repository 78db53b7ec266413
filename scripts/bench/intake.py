"""Intake benchmark: the referral API's throughput and latency against the bare /healthz endpoint.

Usage: .venv/bin/python scripts/bench/intake.py [--duration 10] [--rounds 5] [--concurrency 8] [--workers 2]

1. Creates a throwaway PostgreSQL database (hotline_bench_<random> on 127.0.0.1:5432, user postgres),
   builds its schema, seeds towns, agencies and staff, and creates one referral-source token.
2. Starts gunicorn on a free loopback port with that database and no Redis, so jobs run in-process.
3. Measures three targets: GET /healthz, consultation referrals, and agency-service referrals that
   dispatch. A closed loop of C keep-alive clients measures each target's max rate over D seconds, in
   R windows that alternate between the targets, so a change in the machine's speed during the run
   reaches every target alike. Then an open loop sends requests on a fixed schedule at half of each
   target's rate and measures latency.
4. Prints a table, the referral rate over the bare rate in each round of windows (their spread shows
   how much the machine's speed moved during the run), and checks two targets: the referral rate is
   at least 25% of the bare rate, and the consultation referral p99 at half its max rate is under
   50 ms. It exits 0 whether the targets pass or fail.
5. Stops gunicorn by its PID and drops the database, also after Ctrl-C, SIGTERM or an error.

The load generator runs in this process and shares the machine's cores with gunicorn and
PostgreSQL, so on a small machine the figures measure the whole box, not the server alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import hotline.models  # noqa: F401  (registers every table on SQLModel.metadata)
from hotline import migrate, seed
from hotline.clock import now
from hotline.store import make_engine, transaction
from hotline.tokens import create_token

log = logging.getLogger("hotline.bench")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BENCH_SOURCE = "community_worker"
MIN_RATE_RATIO = 0.25
BENCH_RATE_LIMIT = "10000000/minute"
MAX_OPEN_LOOP_P99_MS = 50.0
MAX_REQUESTS_PER_RUN = 500_000
REQUEST_TIMEOUT_SECONDS = 10
STARTUP_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 10
WARMUP_SECONDS = 2.0


# --- database ----------------------------------------------------------------------------------------


def create_database(name: str) -> str:
    """Create an empty database `name` and return its URL."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    log.info("Bench: created database %s", name)
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
    log.info("Bench: dropped database %s", name)


def build_schema(database_url: str) -> None:
    """Migrate to the newest Alembic revision, or use create_all while migrations/versions is empty."""
    from alembic.script import ScriptDirectory

    if ScriptDirectory.from_config(migrate.alembic_config()).get_heads():
        migrate.upgrade(database_url)
        return

    log.warning("Bench: migrations/versions contains no Alembic revision, so the schema comes from "
                "SQLModel.metadata.create_all instead of hotline.migrate.upgrade")
    engine = create_engine(database_url)
    try:
        SQLModel.metadata.create_all(engine)
    finally:
        engine.dispose()


def seed_database(database_url: str) -> str:
    """Insert the towns, agencies and staff, then return the secret of a new referral-source token."""
    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            seed.seed_towns(session)
            seed.seed_agencies(session, licence_expires_on=now().date() + timedelta(days=365))
            seed.seed_users(session, secrets.token_urlsafe(16))
            session.flush()
            return create_token(session, "intake benchmark", source=BENCH_SOURCE)
    finally:
        engine.dispose()


# --- server ------------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def server_environment(database_url: str, instance_dir: Path) -> dict[str, str]:
    """Copy this process's environment without Redis and point it at the benchmark database.

    The rate limits stay on, so their cost is measured, but high enough that no request is turned away.
    """
    env = {key: value for key, value in os.environ.items() if key != "HOTLINE_REDIS_URL"}
    env.update(HOTLINE_DATABASE_URL=database_url, HOTLINE_LOG_LEVEL="WARNING",
               HOTLINE_INSTANCE_DIR=str(instance_dir), HOTLINE_RATE_LIMIT_PER_TOKEN=BENCH_RATE_LIMIT,
               HOTLINE_RATE_LIMIT_PER_IP=BENCH_RATE_LIMIT)
    return env


def start_server(database_url: str, workers: int, threads: int, work_dir: Path) -> Server:
    """Start gunicorn in its own session, so Ctrl-C reaches only this script, which then stops it."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("gunicorn")), "hotline.wsgi:app", "--bind", f"{HOST}:{port}",
               "--workers", str(workers), "--threads", str(threads), "--log-level", "warning"]
    log_path = work_dir / "gunicorn.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=server_environment(database_url, work_dir),
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    log.info("Bench: started gunicorn pid %s on %s:%s (%s workers, %s threads each)", process.pid, HOST, port,
             workers, threads)
    return Server(process, port, log_path)


def wait_healthy(server: Server) -> None:
    """Poll /healthz until it returns 200, or raise RuntimeError if gunicorn exits or times out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with code {server.process.returncode}; "
                               f"its log:\n{server.log_path.read_text(errors='replace')[-2000:]}")
        try:
            if fetch_status(server.port, "/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn timed out: /healthz returned no 200 within {STARTUP_TIMEOUT_SECONDS} s; "
                       f"see its log:\n{server.log_path.read_text(errors='replace')[-2000:]}")


def fetch_status(port: int, path: str) -> int:
    connection = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def stop_server(server: Server) -> None:
    """Send SIGTERM to the gunicorn master (it stops its workers), then SIGKILL it if it hangs."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("Bench: gunicorn pid %s ignored SIGTERM for %s s; killing it", process.pid,
                        STOP_TIMEOUT_SECONDS)
            process.kill()
            process.wait()
    log.info("Bench: gunicorn pid %s stopped with code %s", process.pid, process.returncode)


# --- request targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str
    method: str
    path: str
    expected_status: int
    make_body: Callable[[], bytes | None]
    headers: dict[str, str]


class ReferralBodies:
    """Referral bodies with a distinct external_id and resident phone per request, safe across threads.

    Distinct phones keep each caller's history empty, as for real referrals. With one shared phone,
    the open-ticket count that the rules read would grow with every request of the run.
    """

    def __init__(self, category: str, needs: list[str], town: str):
        self.category, self.needs, self.town = category, needs, town
        self.run_id = uuid.uuid4().hex[:8]
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            self._next += 1
            serial = self._next
        body = {
            "external_id": f"BENCH-{self.run_id}-{self.category}-{serial:08d}",
            "referrer": {"name": "陈伟", "phone": "138-6245-2821", "org": "盈浦街道西部花苑居委会"},
            "resident": {"name": "高勇", "phone": f"+86 177{serial % 10**8:08d}", "town": self.town,
                         "committee": "西部花苑居委会", "address": "盈浦街道95弄23号"},
            "category": self.category,
            "needs": self.needs,
            "flags": ["low_income"],
            "note": "询问骨灰寄存期限和费用。",
        }
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


def build_targets(token: str, with_dispatch: bool) -> list[Target]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept-Language": "zh-CN"}
    targets = [
        Target("GET /healthz", "GET", "/healthz", 200, lambda: None, {}),
        Target("POST referral (consultation)", "POST", "/api/v1/referrals", 201,
               ReferralBodies("consultation", [], "盈浦街道"), headers),
    ]
    if with_dispatch:
        targets.append(Target("POST referral (agency_service)", "POST", "/api/v1/referrals", 201,
                              ReferralBodies("agency_service", ["body_transport"], "练塘镇"), headers))
    return targets


# --- load generation ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """Latencies in seconds of successful requests, the failed-request count and the run's wall time.

    `client_cpu` is the CPU time this process (the load generator) used during the run, in seconds;
    `machine_busy` is the share of all CPUs' time not idle during the run, from /proc/stat (NaN elsewhere).
    """

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0
    machine_busy: float = float("nan")
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    @property
    def client_cores(self) -> float:
        """Cores the load generator kept busy on average: 1.0 is one core for the whole run."""
        return self.client_cpu / self.elapsed if self.elapsed else 0.0

    def percentile_ms(self, fraction: float) -> float:
        """Return the nearest-rank percentile in milliseconds, or NaN when no request succeeded."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def merge(self, other: Sample) -> None:
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error

    def append_window(self, window: Sample) -> None:
        """Add a later closed-loop window of the same target: its requests, time and CPU use."""
        busy_seconds = [sample.machine_busy * sample.elapsed for sample in (self, window) if sample.elapsed]
        self.merge(window)
        self.elapsed += window.elapsed
        self.client_cpu += window.client_cpu
        self.machine_busy = sum(busy_seconds) / self.elapsed if self.elapsed else float("nan")


class Budget:
    """A thread-safe counter handing out request numbers 0 .. limit-1."""

    def __init__(self, limit: int):
        self.limit = limit
        self._issued = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._issued >= self.limit:
                return None
            self._issued += 1
            return self._issued - 1


def send(connection: http.client.HTTPConnection, target: Target) -> str | None:
    """Send one request on `connection` and return None on the expected status, else a short error text.

    http.client reopens the connection by itself when the server closed it, which gunicorn's sync
    worker does after every response.
    """
    try:
        connection.request(target.method, target.path, body=target.make_body(), headers=target.headers)
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        return f"{type(error).__name__}: {error}"
    if response.status != target.expected_status:
        return f"HTTP {response.status}: {payload[:200].decode('utf-8', 'replace')}"
    return None


def record(sample: Sample, error: str | None, latency: float) -> None:
    if error is None:
        sample.latencies.append(latency)
    else:
        sample.errors += 1
        sample.first_error = sample.first_error or error


def closed_client(port: int, target: Target, deadline: float, budget: Budget, stop: threading.Event,
                  sample: Sample) -> None:
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    while not stop.is_set() and time.perf_counter() < deadline and budget.take() is not None:
        started = time.perf_counter()
        error = send(connection, target)
        record(sample, error, time.perf_counter() - started)
    connection.close()


def open_client(port: int, target: Target, schedule: Callable[[int], float], cutoff: float, budget: Budget,
                stop: threading.Event, sample: Sample) -> None:
    """Send request i at schedule(i) and count its latency from that instant, so queueing delay is included."""
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    while not stop.is_set() and (index := budget.take()) is not None:
        due = schedule(index)
        time.sleep(max(0.0, due - time.perf_counter()))
        if time.perf_counter() > cutoff:
            break
        error = send(connection, target)
        record(sample, error, time.perf_counter() - due)
    connection.close()


def cpu_times() -> tuple[int, int] | None:
    """Return (busy, total) CPU ticks of the whole machine since boot, or None without /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def busy_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    if before is None or after is None or after[1] == before[1]:
        return float("nan")
    return (after[0] - before[0]) / (after[1] - before[1])


def run_clients(client, arguments: list[tuple], started: float) -> Sample:
    """Run `client(*arguments[i], sample_i)` on one thread each and merge their samples."""
    samples = [Sample() for _ in arguments]
    cpu_before, machine_before = time.process_time(), cpu_times()
    threads = [threading.Thread(target=client, args=(*args, own), daemon=True)
               for args, own in zip(arguments, samples, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = Sample(elapsed=time.perf_counter() - started, client_cpu=time.process_time() - cpu_before,
                   machine_busy=busy_fraction(machine_before, cpu_times()))
    for own in samples:
        total.merge(own)
    return total


def closed_loop(port: int, target: Target, clients: int, duration: float, stop: threading.Event) -> Sample:
    """Run `clients` back-to-back request loops for `duration` seconds (or MAX_REQUESTS_PER_RUN requests)."""
    started = time.perf_counter()
    budget = Budget(MAX_REQUESTS_PER_RUN)
    arguments = [(port, target, started + duration, budget, stop)] * clients
    return run_clients(closed_client, arguments, started)


def open_loop(port: int, target: Target, rate: float, clients: int, duration: float,
              stop: threading.Event) -> Sample:
    """Send round(rate * duration) requests at evenly spaced instants; stop at twice the duration."""
    started = time.perf_counter()
    budget = Budget(max(1, min(MAX_REQUESTS_PER_RUN, round(rate * duration))))
    cutoff = started + 2 * duration

    def schedule(index: int) -> float:
        return started + index / rate

    arguments = [(port, target, schedule, cutoff, budget, stop)] * clients
    return run_clients(open_client, arguments, started)


# --- measurement and report --------------------------------------------------------------------------


@dataclass
class Result:
    target: Target
    closed: Sample
    open: Sample
    open_rate: float
    window_rates: list[float]


def measure(port: int, targets: list[Target], args: argparse.Namespace, stop: threading.Event) -> list[Result]:
    """Warm the workers up, find each target's closed-loop max rate, then measure each at half of it."""
    for target in targets:
        log.info("Bench: %s: warm-up for %.0f s", target.label, WARMUP_SECONDS)
        closed_loop(port, target, args.concurrency, WARMUP_SECONDS, stop)

    closed, window_rates = alternating_closed_loops(port, targets, args, stop)
    results = []
    for index, (target, sample) in enumerate(zip(targets, closed, strict=True)):
        open_rate = sample.rate / 2
        if open_rate <= 0:
            raise RuntimeError(f"{target.label}: no request succeeded; first error: {sample.first_error}")

        log.info("Bench: %s: open loop at %.1f requests/s for %s s", target.label, open_rate, args.duration)
        opened = open_loop(port, target, open_rate, 2 * args.concurrency, args.duration, stop)
        for measured in (sample, opened):
            if measured.errors:
                log.warning("Bench: %s: %s requests failed; first error: %s", target.label, measured.errors,
                            measured.first_error)
        results.append(Result(target, sample, opened, open_rate, [rates[index] for rates in window_rates]))
    return results


def alternating_closed_loops(port: int, targets: list[Target], args: argparse.Namespace,
                             stop: threading.Event) -> tuple[list[Sample], list[list[float]]]:
    """Run each target's closed loop in `args.rounds` windows, the targets in turn.

    Return each target's total, and each round's rate of every target.
    """
    window = args.duration / args.rounds
    log.info("Bench: closed loops, %s clients, %s windows of %.1f s per target, targets in turn",
             args.concurrency, args.rounds, window)
    totals = [Sample() for _ in targets]
    window_rates = []
    for _ in range(args.rounds):
        rates = []
        for target, total in zip(targets, totals, strict=True):
            sample = closed_loop(port, target, args.concurrency, window, stop)
            total.append_window(sample)
            rates.append(sample.rate)
        window_rates.append(rates)
    return totals, window_rates


def format_table(results: list[Result]) -> str:
    """Format one row per target, closed loop first, then open loop.

    `gen cores` is the load generator's CPU use in cores, and `busy` is the whole machine's CPU use.
    """
    header = (f"{'target':<32}{'max req/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'gen cores':>10}{'busy':>6}  |"
              f"{'open req/s':>11}{'p50 ms':>8}{'p99 ms':>8}{'gen cores':>10}{'busy':>6}{'errors':>8}")
    lines = [header, "-" * len(header)]
    for result in results:
        lines.append(f"{result.target.label:<32}{format_sample(result.closed, 10)}  |"
                     f"{format_sample(result.open, 11)}{result.closed.errors + result.open.errors:>8}")
    return "\n".join(lines)


def format_sample(sample: Sample, rate_width: int) -> str:
    return (f"{sample.rate:>{rate_width}.1f}{sample.percentile_ms(0.5):>8.1f}{sample.percentile_ms(0.99):>8.1f}"
            f"{sample.client_cores:>10.2f}{sample.machine_busy:>6.0%}")


def format_window_ratios(bare: Result, referral: Result) -> str:
    """Format the referral rate over the bare rate of each round, which shows how much the machine's speed moved."""
    ratios = [referral_rate / bare_rate if bare_rate else float("nan")
              for referral_rate, bare_rate in zip(referral.window_rates, bare.window_rates, strict=True)]
    return "ratio in each round of windows: " + " ".join(f"{ratio:.3f}" for ratio in ratios)


def format_verdicts(bare: Result, referral: Result) -> str:
    ratio = referral.closed.rate / bare.closed.rate
    p99 = referral.open.percentile_ms(0.99)
    rate_verdict = "PASS" if ratio >= MIN_RATE_RATIO else "FAIL"
    latency_verdict = "PASS" if p99 < MAX_OPEN_LOOP_P99_MS else "FAIL"
    return "\n".join([
        f"ratio referral_rate / bare_rate: {ratio:.3f}",
        format_window_ratios(bare, referral),
        f"{rate_verdict}  consultation referral max rate >= {MIN_RATE_RATIO:.0%} of GET /healthz ({ratio:.1%})",
        f"{latency_verdict}  consultation referral p99 at half its max rate < {MAX_OPEN_LOOP_P99_MS:.0f} ms "
        f"({p99:.1f} ms at {referral.open_rate:.1f} requests/s)",
    ])


def format_report(results: list[Result], args: argparse.Namespace, load_before: float) -> str:
    settings = (f"gunicorn {args.workers} workers x {args.threads} threads, {args.concurrency} clients, "
                f"{args.duration:g} s per target in {args.rounds} alternating windows, {os.cpu_count()} CPUs "
                "shared by server, PostgreSQL and clients, "
                f"1-minute load average before the run {load_before:.2f}")
    open_note = (f"open loop: {2 * args.concurrency} client threads, arrivals evenly spaced at half the max rate, "
                 "latency counted from each scheduled send instant")
    return "\n".join([settings, open_note, "", format_table(results), "",
                      format_verdicts(results[0], results[1]), ""])


# --- entry point -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark POST /api/v1/referrals against GET /healthz.")
    parser.add_argument("--duration", type=float, default=10,
                        help="seconds of closed loop per target, and of each open-loop run")
    parser.add_argument("--rounds", type=int, default=5,
                        help="closed-loop windows per target; the targets take turns, one window each")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop keep-alive clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per gunicorn worker; above 1 gunicorn uses the gthread worker")
    parser.add_argument("--skip-dispatch", action="store_true",
                        help="skip the agency_service + body_transport referrals, which dispatch in-process")
    args = parser.parse_args(argv)
    if args.duration <= 0 or min(args.rounds, args.concurrency, args.workers, args.threads) < 1:
        parser.error("--duration must be above 0; --rounds, --concurrency, --workers and --threads at least 1")
    return args


def raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, database_url: str, work_dir: Path, stop: threading.Event) -> list[Result]:
    """Build and seed the database, start gunicorn and measure. Gunicorn is stopped on the way out."""
    build_schema(database_url)
    token = seed_database(database_url)

    server = start_server(database_url, args.workers, args.threads, work_dir)
    try:
        wait_healthy(server)
        return measure(server.port, build_targets(token, not args.skip_dispatch), args, stop)
    finally:
        stop.set()
        stop_server(server)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    # A shell starts background jobs with SIGINT ignored; restore Python's handler so cleanup still runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupt)

    load_before = os.getloadavg()[0]
    database_name = f"hotline_bench_{uuid.uuid4().hex[:10]}"
    database_url = create_database(database_name)
    stop = threading.Event()
    try:
        with tempfile.TemporaryDirectory(prefix="hotline-bench-") as work_dir:
            results = run(args, database_url, Path(work_dir), stop)
    except KeyboardInterrupt:
        log.warning("Bench: interrupted; dropping database %s", database_name)
        return 130
    finally:
        stop.set()
        drop_database(database_name)

    sys.stdout.write(format_report(results, args, load_before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
