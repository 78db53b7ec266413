"""The scheduler process: periodic sweeps for SLA breaches, offer time-outs and the outbox, and daily jobs.

Run exactly one (`python -m workers.scheduler`). With Redis, each tick first takes a key with SET NX
that expires with the tick, so a second scheduler started by mistake skips the tick instead of
repeating it. In the embedded default the same jobs run in a thread of the demo process.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from hotline.clock import SHANGHAI
from workers import jobs

log = logging.getLogger("hotline.scheduler")

# name -> (job, interval in seconds)
SWEEPS: dict[str, tuple[Callable[[], int], int]] = {
    "sla": (jobs.sweep_sla, 30),
    "offers": (jobs.sweep_offers, 15),
    "outbox": (jobs.sweep_outbox, 30),
    "statistics": (jobs.refresh_statistics, 3600),
}
MISFIRE_GRACE_SECONDS = 30

# name -> (job, hour, minute): once a day at that time in Asia/Shanghai, every day of the week.
DAILY_JOBS: dict[str, tuple[Callable[[], int], int, int]] = {
    "agency-expiry": (jobs.remind_agency_expiry, 9, 0),
}
EVERY_DAY = "mon,tue,wed,thu,fri,sat,sun"
# A daily run that starts up to an hour late (a busy or paused scheduler) still runs. A later one is
# skipped, and the next day's run catches up because the jobs send what is still due.
DAILY_MISFIRE_GRACE_SECONDS = 3600
DAY_SECONDS = 24 * 3600


def build_scheduler(runtime, background: bool) -> BackgroundScheduler | BlockingScheduler:
    """A scheduler with every sweep and daily job, coalescing missed runs.

    Sweeps run in the hotline's time zone; daily jobs name Asia/Shanghai themselves.
    """
    scheduler_class = BackgroundScheduler if background else BlockingScheduler
    scheduler = scheduler_class(
        timezone=runtime.settings.timezone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
    )
    lock = _tick_lock(runtime)
    for name, (job, seconds) in SWEEPS.items():
        scheduler.add_job(_guarded(name, job, seconds, lock), IntervalTrigger(seconds=seconds,
                          timezone=runtime.settings.timezone), id=f"sweep-{name}", name=f"sweep {name}")
    for name, (job, hour, minute) in DAILY_JOBS.items():
        trigger = CronTrigger(day_of_week=EVERY_DAY, hour=hour, minute=minute, timezone=SHANGHAI)
        scheduler.add_job(_guarded(name, job, DAY_SECONDS, lock), trigger, id=f"daily-{name}", name=f"daily {name}",
                          coalesce=True, misfire_grace_time=DAILY_MISFIRE_GRACE_SECONDS)
    return scheduler


def _tick_lock(runtime):
    queue = runtime.queue
    connection = getattr(queue, "connection", None)
    if connection is None:
        return None
    return connection


def _guarded(name: str, job: Callable[[], int], seconds: int, redis_connection):
    def run() -> None:
        if redis_connection is not None:
            tick = int(time.time()) // seconds
            key = f"hotline:scheduler:{name}:{tick}"
            if not redis_connection.set(key, "1", nx=True, ex=max(seconds - 1, 1)):
                log.info("Scheduler: sweep %s tick %s already taken by another scheduler", name, tick)
                return
        try:
            count = job()
        except Exception:
            log.exception("Scheduler: sweep %s failed; it runs again next tick", name)
            return
        if count:
            log.info("Scheduler: sweep %s handled %s item(s)", name, count)

    return run


def main() -> None:
    from hotline.logging_setup import configure_logging
    from hotline.runtime import current

    configure_logging()
    runtime = current()
    scheduler = build_scheduler(runtime, background=False)
    signal.signal(signal.SIGTERM, lambda *_: scheduler.shutdown(wait=False))
    log.info("Scheduler: starting with sweeps %s and daily jobs %s", ", ".join(SWEEPS), ", ".join(DAILY_JOBS))
    scheduler.start()
    log.info("Scheduler: stopped")


if __name__ == "__main__":
    main()
