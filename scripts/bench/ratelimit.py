"""Rate limiter benchmark: CPU time per request with the public endpoints' limits on and off.

Usage: .venv/bin/python scripts/bench/ratelimit.py [--requests 500] [--rounds 16] [--redis-url URL]

1. Creates a throwaway PostgreSQL database (hotline_bench_<random> on 127.0.0.1:5432, user postgres) with
   the helpers of intake.py, builds its schema, seeds it and creates one referral-source token.
2. Builds two apps on that database in this process: one with the rate limits as configured (limits far
   above what the run sends, counters in memory, or in Redis with --redis-url) and one built without
   hotline.ratelimit.init_app, the baseline. Jobs run in-process, and Flask's test client sends requests.
3. For each target (POST /api/v1/referrals with a valid token and a consultation body, GET /healthz) it
   sends 200 warm-up requests to each app, then alternates rounds of --requests requests between them,
   in reverse order every other round.
4. Prints the median over the rounds of the CPU time per request: `thread` is time.thread_time (the
   thread that serves the requests) and `process` is time.process_time (every thread of this process,
   so it also counts threads that a storage starts). The limiter's cost is the median over the rounds
   of the difference from the baseline in the same round. PostgreSQL's and Redis's own CPU is not
   counted.
5. Drops the database, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

# intake.py sits beside this file, and Python puts a script's folder first on sys.path.
from intake import (
    BENCH_RATE_LIMIT,
    ReferralBodies,
    build_schema,
    create_database,
    drop_database,
    raise_interrupt,
    seed_database,
)

from hotline import create_app, ratelimit
from hotline.config import load_settings
from hotline.queueing import InProcessQueue
from hotline.runtime import build_runtime

log = logging.getLogger("hotline.bench")

WARMUP_REQUESTS = 200


@dataclass(frozen=True)
class Target:
    label: str
    expected_status: int
    send: Callable[[object], int]


@dataclass
class Figures:
    """CPU seconds per request of each round, by the thread clock and the process clock."""

    thread: list[float]
    process: list[float]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per round and app (default 500)")
    parser.add_argument("--rounds", type=int, default=16, help="rounds per target and app (default 16)")
    parser.add_argument("--redis-url", help="keep the counters in this Redis database, e.g. redis://127.0.0.1:6379/5")
    return parser.parse_args(argv)


def build_clients(database_url: str, instance_dir: str, redis_url: str | None):
    """Return test clients of the app with rate limits and of the app built without them."""
    env = {"HOTLINE_DATABASE_URL": database_url, "HOTLINE_INSTANCE_DIR": instance_dir,
           "HOTLINE_SECRET_KEY": uuid.uuid4().hex, "HOTLINE_RATE_LIMIT_PER_TOKEN": BENCH_RATE_LIMIT,
           "HOTLINE_RATE_LIMIT_PER_IP": BENCH_RATE_LIMIT}
    if redis_url:
        env["HOTLINE_REDIS_URL"] = redis_url
    runtime = build_runtime(load_settings(env), queue=InProcessQueue())
    limited = create_app(runtime)

    init_app = ratelimit.init_app
    ratelimit.init_app = lambda app, settings: None
    try:
        baseline = create_app(runtime)
    finally:
        ratelimit.init_app = init_app
    return limited.test_client(), baseline.test_client()


def build_targets(token: str) -> list[Target]:
    bodies = ReferralBodies("consultation", [], "盈浦街道")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept-Language": "zh-CN"}

    def post_referral(client) -> int:
        return client.post("/api/v1/referrals", data=bodies(), headers=headers).status_code

    def get_healthz(client) -> int:
        return client.get("/healthz").status_code

    return [Target("POST /api/v1/referrals", 201, post_referral), Target("GET /healthz", 200, get_healthz)]


def run_round(client, target: Target, requests: int) -> tuple[float, float]:
    """Send `requests` requests and return the thread and process CPU seconds per request."""
    thread_start, process_start = time.thread_time(), time.process_time()
    for _ in range(requests):
        status = target.send(client)
        if status != target.expected_status:
            raise RuntimeError(f"{target.label} returned {status}, expected {target.expected_status}")
    return ((time.thread_time() - thread_start) / requests, (time.process_time() - process_start) / requests)


def measure(clients: dict[str, object], target: Target, args: argparse.Namespace) -> dict[str, Figures]:
    """Warm up each app, then alternate rounds between them, so drift on the machine hits both alike.

    Every other round runs the apps in reverse order, so neither always runs right after the other.
    """
    for client in clients.values():
        run_round(client, target, WARMUP_REQUESTS)

    figures = {name: Figures([], []) for name in clients}
    for round_number in range(args.rounds):
        order = list(clients.items())
        if round_number % 2:
            order.reverse()
        for name, client in order:
            thread, process = run_round(client, target, args.requests)
            figures[name].thread.append(thread)
            figures[name].process.append(process)
            log.info("Bench: %s, %s, round %s: %.3f ms thread CPU per request", target.label, name,
                     round_number + 1, 1000 * thread)
    return figures


def format_report(results: dict[str, dict[str, Figures]], args: argparse.Namespace) -> str:
    storage = f"Redis {args.redis_url}" if args.redis_url else "memory"
    lines = [f"CPU ms per request, median of {args.rounds} rounds of {args.requests} requests; counters in {storage}",
             "limiter: median over the rounds of (limits on - limits off) in the same round",
             "",
             f"{'target':<24}{'clock':>9}{'limits on':>11}{'limits off':>12}{'limiter':>10}{'on/off':>9}",
             "-" * 75]
    for label, figures in results.items():
        for clock in ("thread", "process"):
            on_rounds, off_rounds = getattr(figures["limits on"], clock), getattr(figures["limits off"], clock)
            on, off = 1000 * statistics.median(on_rounds), 1000 * statistics.median(off_rounds)
            differences = [limited - baseline for limited, baseline in zip(on_rounds, off_rounds, strict=True)]
            limiter = 1000 * statistics.median(differences)
            lines.append(f"{label:<24}{clock:>9}{on:>11.3f}{off:>12.3f}{limiter:>10.3f}{on / off:>9.3f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupt)

    database_name = f"hotline_bench_{uuid.uuid4().hex[:10]}"
    database_url = create_database(database_name)
    try:
        build_schema(database_url)
        token = seed_database(database_url)
        with tempfile.TemporaryDirectory(prefix="hotline-bench-") as instance_dir:
            limited, baseline = build_clients(database_url, instance_dir, args.redis_url)
            # As hotline/wsgi.py does after start-up, so collections scan only what requests create.
            gc.collect()
            gc.freeze()
            clients = {"limits on": limited, "limits off": baseline}
            results = {target.label: measure(clients, target, args) for target in build_targets(token)}
    except KeyboardInterrupt:
        log.warning("Bench: interrupted; dropping database %s", database_name)
        return 130
    finally:
        drop_database(database_name)

    sys.stdout.write(format_report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
