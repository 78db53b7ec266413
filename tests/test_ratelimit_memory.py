"""The in-memory fixed-window counters: windows, lazy expiry, the sweep of old keys, threads."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import time_machine

from hotline.ratelimit_memory import SWEEP_INTERVAL_SECONDS, LazyMemoryStorage

START = datetime(2026, 12, 7, 2, 0, 30, tzinfo=UTC)


def test_incr_counts_within_window():
    storage = LazyMemoryStorage()

    with time_machine.travel(START, tick=False):
        counts = [storage.incr("key", 60) for _ in range(3)]
        expiry = storage.get_expiry("key")

    assert counts == [1, 2, 3]
    assert expiry == START.timestamp() + 60, "the window opens with the key's first increment"


def test_window_expires_when_read():
    storage = LazyMemoryStorage()

    with time_machine.travel(START, tick=False) as traveller:
        storage.incr("key", 60)
        storage.incr("key", 60)
        traveller.shift(timedelta(seconds=60))
        expired_count = storage.get("key")
        expired_expiry = storage.get_expiry("key")
        next_count = storage.incr("key", 60)
        next_expiry = storage.get_expiry("key")

    assert expired_count == 0
    assert expired_expiry == START.timestamp() + 60, "an expired key reports now as its expiry"
    assert next_count == 1, "the next increment opens a new window"
    assert next_expiry == START.timestamp() + 120


def test_keys_counted_separately():
    storage = LazyMemoryStorage()

    storage.incr("first", 60)
    storage.incr("first", 60)
    storage.incr("second", 60, amount=5)

    assert storage.get("first") == 2
    assert storage.get("second") == 5
    assert storage.get("unknown") == 0


def test_sweep_removes_expired_keys():
    storage = LazyMemoryStorage()

    with time_machine.travel(START, tick=False) as traveller:
        storage.incr("short", 1)
        storage.incr("long", 3600)
        traveller.shift(timedelta(seconds=SWEEP_INTERVAL_SECONDS))
        storage.incr("other", 60)

    assert set(storage._counters) == {"long", "other"}, "an expired key is dropped without being read"


def test_incr_starts_no_thread(monkeypatch):
    storage = LazyMemoryStorage()
    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread.name) or start(thread))

    for serial in range(50):
        storage.incr(f"key-{serial}", 0.001)

    assert started == []


def test_concurrent_incr_loses_no_count():
    storage = LazyMemoryStorage()
    barrier = threading.Barrier(8)

    def hit_many():
        barrier.wait()
        for _ in range(5000):
            storage.incr("shared", 3600)

    threads = [threading.Thread(target=hit_many) for _ in range(8)]
    # Switch threads every microsecond, so an increment without the lock would lose counts.
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous_interval)

    assert storage.get("shared") == 40000


def test_clear_and_reset():
    storage = LazyMemoryStorage()
    storage.incr("first", 60)
    storage.incr("second", 60)

    storage.clear("first")
    first_after_clear = storage.get("first")
    removed = storage.reset()

    assert first_after_clear == 0
    assert removed == 1
    assert storage.get("second") == 0
    assert storage.check()
