"""Rate limits on the public endpoints, per API token and per client address (Flask-Limiter).

Counters live in Redis when HOTLINE_REDIS_URL is set, so every web process shares them; without Redis
they live in the process's memory, which is right for the one-process embedded default. Each limit is
one counter over all public endpoints together, in fixed windows that open with a key's first request.
A request over a limit gets 429 with Retry-After and the usual JSON error, in GeoReport's error format
under /open311/.
If Redis is unreachable the limits are not applied, rather than turning intake away.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from flask import Flask, jsonify, request
from flask_babel import gettext
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit

from hotline.config import Settings
from hotline.validation import N_

log = logging.getLogger("hotline.ratelimit")

# Paths that platforms, agencies and the public reach; staff pages and the staff API are not limited.
PUBLIC_PREFIXES = ("/api/v1/referrals", "/api/v1/webhook", "/api/v1/kb/", "/open311/", "/offers/",
                   "/api/openapi.json", "/api/docs")
TOO_MANY_REQUESTS = N_("Too many requests; try again in %(seconds)s seconds.")


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Attach the per-token and per-address limits to `app`."""
    limiter = Limiter(
        key_func=client_address,
        app=app,
        storage_uri=storage_uri(settings.redis_url),
        application_limits=[
            ApplicationLimit(settings.rate_limit_per_ip, key_function=address_key, exempt_when=is_not_public,
                             scope="public-ip"),
            ApplicationLimit(settings.rate_limit_per_token, key_function=token_key, exempt_when=has_no_token,
                             scope="public-token"),
        ],
        # Off, because Flask-Limiter would then send Retry-After on every response, successful ones too;
        # the 429 response sets its own Retry-After.
        headers_enabled=False,
        key_prefix="hotline-ratelimit",
        swallow_errors=True,
        on_breach=breach_response,
    )
    # The app's handler for HTTP errors would return 429 as a generic error, so this one comes first.
    app.register_error_handler(RateLimitExceeded, _limit_exceeded)
    return limiter


def _limit_exceeded(error: RateLimitExceeded):
    """Send the response breach_response built; without one, the client waits a whole window of the limit."""
    if error.response is not None:
        return error.response
    return too_many_requests(int(error.limit.limit.get_expiry()))


def storage_uri(redis_url: str | None) -> str:
    """The `limits` storage for HOTLINE_REDIS_URL, whose unix:// form `limits` spells redis+unix://."""
    if redis_url is None:
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def is_public() -> bool:
    return request.path.startswith(PUBLIC_PREFIXES)


def is_not_public() -> bool:
    return not is_public()


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


def has_no_token() -> bool:
    return not is_public() or presented_token() is None


def token_key() -> str:
    """A digest of the token, so no secret is written to the counter store."""
    return "token:" + hashlib.sha256(presented_token().encode("utf-8")).hexdigest()[:32]


def breach_response(limit: RequestLimit):
    """Build the 429 response with Retry-After, as JSON in the request's language."""
    log.warning("Rate limit: %s reached %s on %s %s", limit.key, limit.limit, request.method, request.path)
    return too_many_requests(max(1, math.ceil(limit.reset_at - time.time())))


def too_many_requests(seconds: int):
    message = gettext(TOO_MANY_REQUESTS, seconds=seconds)
    if request.path.startswith("/open311/"):
        response = jsonify([{"code": 429, "description": message}])
    else:
        response = jsonify({"error": {"code": "rate_limited", "message": message, "field": None}})
    response.status_code = 429
    response.headers["Retry-After"] = str(seconds)
    return response
