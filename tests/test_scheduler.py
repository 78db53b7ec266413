"""The scheduler: sweeps configured as required, and one tick runs once across two schedulers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from hotline.runtime import build_runtime
from workers import scheduler as scheduler_module


def test_sweeps_coalesce_with_grace(runtime):
    scheduler = scheduler_module.build_scheduler(runtime, background=True)
    scheduler.start(paused=True)
    jobs = {job.id: job for job in scheduler.get_jobs() if job.id.startswith("sweep-")}
    scheduler.shutdown(wait=False)

    assert set(jobs) == {"sweep-sla", "sweep-offers", "sweep-outbox", "sweep-statistics"}
    for job in jobs.values():
        assert job.coalesce is True
        assert job.misfire_grace_time >= 30
        assert job.max_instances == 1
        assert isinstance(job.trigger, IntervalTrigger)
    assert jobs["sweep-sla"].trigger.interval.total_seconds() == 30


@pytest.mark.redis
def test_second_scheduler_skips_taken_tick(settings, redis_url):
    runtime = build_runtime(replace(settings, redis_url=redis_url))
    calls = []

    first = scheduler_module._guarded("probe", lambda: calls.append("first") or 0, 30, runtime.queue.connection)
    second = scheduler_module._guarded("probe", lambda: calls.append("second") or 0, 30, runtime.queue.connection)
    first()
    second()

    assert calls == ["first"]
    runtime.engine.dispose()


def test_failing_sweep_logged_not_raised(caplog):
    def broken():
        raise RuntimeError("database unavailable")

    scheduler_module._guarded("broken", broken, 30, None)()

    assert "sweep broken failed" in caplog.text
