"""Fixed-window rate-limit counters in the process's memory, for `limits`' FixedWindowRateLimiter.

`limits`' own MemoryStorage (5.8) drops expired counters from a 10 ms threading.Timer and starts a new
timer on every increment that finds the previous one finished, so a busy process starts a thread about
every 10 ms. This storage expires a counter when it is next read or incremented instead, and an increment
removes the expired counters of all keys at most once per SWEEP_INTERVAL_SECONDS, so it starts no thread.
It implements only the fixed-window part of the storage interface.
"""

from __future__ import annotations

import threading
import time

from limits.storage import Storage

# How often an increment also removes every expired counter, which bounds memory to the keys seen in
# about one window plus this interval.
SWEEP_INTERVAL_SECONDS = 60.0


class LazyMemoryStorage(Storage):
    """Counters as (count, expires_at) pairs under one lock, so threads may share one instance."""

    # Not registered for a URI scheme: ratelimit.build_storage constructs it directly.
    STORAGE_SCHEME = None

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, float]] = {}
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to the counter of `key`, starting a window of `expiry` seconds if none is open."""
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            count, expires_at = self._counters.get(key, (0, 0.0))
            if expires_at <= now:
                count, expires_at = 0, now + expiry
            count += amount
            self._counters[key] = (count, expires_at)
        return count

    def get(self, key: str) -> int:
        count, expires_at = self._counters.get(key, (0, 0.0))
        return count if expires_at > time.time() else 0

    def get_expiry(self, key: str) -> float:
        """Return when the window of `key` closes, as a Unix time, or now when no window is open."""
        now = time.time()
        _, expires_at = self._counters.get(key, (0, 0.0))
        return expires_at if expires_at > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            removed = len(self._counters)
            self._counters.clear()
        return removed

    def clear(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    def _sweep(self, now: float) -> None:
        """Remove every expired counter. The caller holds the lock."""
        self._counters = {key: value for key, value in self._counters.items() if value[1] > now}
        self._next_sweep = now + SWEEP_INTERVAL_SECONDS
