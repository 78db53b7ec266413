"""The SLA sweep under the real APScheduler: a late tick still runs once, an outage catches up once."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import time_machine

from workers import scheduler as scheduler_module

START = datetime.fromisoformat("2026-03-09T09:00:00+08:00")


def wait_for(calls: list, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(calls) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)


def test_late_tick_and_outage_each_run_once(runtime, monkeypatch):
    calls = []
    monkeypatch.setitem(scheduler_module.SWEEPS, "sla", (lambda: calls.append(1) or 0, 30))

    with time_machine.travel(START, tick=False) as traveller:
        scheduler = scheduler_module.build_scheduler(runtime, background=True)
        scheduler.start(paused=True)
        try:
            # The first tick is due at START + 30 s; the scheduler wakes 5 s late.
            traveller.move_to(START + timedelta(seconds=35))
            scheduler.resume()
            wait_for(calls, 1)
            assert len(calls) == 1

            # Five minutes without a scheduler: ten ticks missed, one catch-up run.
            scheduler.pause()
            traveller.move_to(START + timedelta(seconds=35 + 300))
            scheduler.resume()
            wait_for(calls, 2)
            assert len(calls) == 2
        finally:
            scheduler.shutdown(wait=False)
