"""Rate limits on the public endpoints, per API token and per client address (`limits` package).

Counters live in Redis when HOTLINE_REDIS_URL is set, so every web process shares them; without Redis
they live in the process's memory, which is right for the one-process embedded default. Each limit is
one counter over all public endpoints together, in fixed windows that open with a key's first request.
A request over a limit gets 429 with Retry-After and the usual JSON error, in GeoReport's error format
under /open311/.
If Redis is unreachable the limits are not applied, rather than turning intake away, and the failure is
logged at most once a minute with the count of requests it let through.

One before-request hook does the work. It returns at once, counting nothing, for a path outside
PUBLIC_PREFIXES and for a request that matches no route (which gets 404 or 405). Otherwise it computes
each key once and increments the counters, shortest window first, until one is over its limit.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time

from flask import Flask, jsonify, request
from flask_babel import gettext
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from hotline.config import Settings
from hotline.ratelimit_memory import LazyMemoryStorage
from hotline.validation import N_

log = logging.getLogger("hotline.ratelimit")

# Paths that platforms, agencies and the public reach; staff pages and the staff API are not limited.
PUBLIC_PREFIXES = ("/api/v1/referrals", "/api/v1/webhook", "/api/v1/kb/", "/open311/", "/offers/",
                   "/api/openapi.json", "/api/docs")
TOO_MANY_REQUESTS = N_("Too many requests; try again in %(seconds)s seconds.")
# Counter keys read "LIMITER/hotline-ratelimit/<key>/<scope>/<amount>/<multiples>/<unit>", as
# Flask-Limiter wrote them before, so counters in Redis carry over.
KEY_PREFIX = "hotline-ratelimit"
ADDRESS_SCOPE = "public-ip"
TOKEN_SCOPE = "public-token"
# While the counter storage fails, one error is logged per interval with the count of requests let through.
STORAGE_ERROR_LOG_INTERVAL_SECONDS = 60.0


class PublicLimits:
    """The per-address and per-token limits of the public endpoints, and the storage of their counters."""

    def __init__(self, settings: Settings):
        self.storage = build_storage(settings.redis_url)
        self.limiter = FixedWindowRateLimiter(self.storage)
        scoped = [(item, ADDRESS_SCOPE) for item in parse_many(settings.rate_limit_per_ip)]
        scoped += [(item, TOKEN_SCOPE) for item in parse_many(settings.rate_limit_per_token)]
        # Shortest window first. The sort is stable, so for equal windows the address limit comes first.
        self.limits: list[tuple[RateLimitItem, str]] = sorted(scoped, key=lambda pair: pair[0])
        self._failure_lock = threading.Lock()
        self._failures_since_log = 0
        self._next_failure_log = 0.0

    def check_request(self):
        """Count the request against each limit, and return the 429 response if one is over (else None)."""
        if request.endpoint is None or not request.path.startswith(PUBLIC_PREFIXES):
            return None

        keys = {ADDRESS_SCOPE: address_key(), TOKEN_SCOPE: token_key()}
        try:
            return self._hit_limits(keys)
        except StorageError as error:
            self._log_storage_failure(error)
            return None

    def _hit_limits(self, keys: dict[str, str | None]):
        for item, scope in self.limits:
            key = keys[scope]
            if key is None:
                continue
            if not self.limiter.hit(item, KEY_PREFIX, key, scope):
                return self._breach_response(item, key, scope)
        return None

    def _breach_response(self, item: RateLimitItem, key: str, scope: str):
        """Build the 429 response with Retry-After, as JSON in the request's language."""
        log.warning("Rate limit: %s reached %s on %s %s", key, item, request.method, request.path)
        reset_at = self.limiter.get_window_stats(item, KEY_PREFIX, key, scope).reset_time
        return too_many_requests(max(1, math.ceil(reset_at - time.time())))

    def _log_storage_failure(self, error: StorageError) -> None:
        now = time.monotonic()
        with self._failure_lock:
            self._failures_since_log += 1
            if now < self._next_failure_log:
                return
            failures, self._failures_since_log = self._failures_since_log, 0
            self._next_failure_log = now + STORAGE_ERROR_LOG_INTERVAL_SECONDS
        log.error("Rate limit: counter storage failed, so limits were not applied to %s request(s) "
                  "(logged at most once per %s s): %s", failures, STORAGE_ERROR_LOG_INTERVAL_SECONDS, error)


def init_app(app: Flask, settings: Settings) -> PublicLimits:
    """Attach the per-token and per-address limits to `app`."""
    limits = PublicLimits(settings)
    app.before_request(limits.check_request)
    return limits


def build_storage(redis_url: str | None) -> Storage:
    """Return Redis storage for HOTLINE_REDIS_URL, or counters in this process's memory without it."""
    if redis_url is None:
        return LazyMemoryStorage()
    return storage_from_string(storage_uri(redis_url), wrap_exceptions=True)


def storage_uri(redis_url: str | None) -> str:
    """The `limits` storage for HOTLINE_REDIS_URL, whose unix:// form `limits` spells redis+unix://."""
    if redis_url is None:
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def client_address() -> str:
    """The client's address; behind HOTLINE_TRUSTED_PROXY_HOPS proxies, ProxyFix has already set it."""
    return request.remote_addr or "unknown"


def address_key() -> str:
    return "ip:" + client_address()


def presented_token() -> str | None:
    """The token the request carries: a Bearer header, or GeoReport's api_key parameter."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    api_key = request.args.get("api_key")
    if api_key is None and request.mimetype == "application/x-www-form-urlencoded":
        api_key = request.form.get("api_key")
    return (api_key or "").strip() or None


def token_key() -> str | None:
    """Return a digest of the presented token, so no secret reaches the counter store, or None without one."""
    token = presented_token()
    if token is None:
        return None
    return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


def too_many_requests(seconds: int):
    message = gettext(TOO_MANY_REQUESTS, seconds=seconds)
    if request.path.startswith("/open311/"):
        response = jsonify([{"code": 429, "description": message}])
    else:
        response = jsonify({"error": {"code": "rate_limited", "message": message, "field": None}})
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response
