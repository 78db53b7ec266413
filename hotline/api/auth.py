"""Bearer-token authentication and scope checks for the JSON API."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import wraps

from flask import current_app, g, request

from hotline import tokens
from hotline.api import schemas
from hotline.api.errors import ApiError, error_response
from hotline.clock import now
from hotline.request_connection import RequestConnection
from hotline.validation import N_

STAFF_ROLES = ("operator", "supervisor", "admin")
# The scope a source token needs for a URL rule: (method or None for any, rule, scope). A rule matches
# itself and the rules below it; the first match wins, and a rule that matches none needs no scope.
SCOPE_RULES = (
    ("POST", "/api/v1/referrals", tokens.REFERRALS_WRITE),
    ("GET", "/api/v1/referrals", tokens.REFERRALS_READ),
    (None, "/api/v1/webhook", tokens.REFERRALS_READ),
    (None, "/api/v1/kb", tokens.KB_READ),
    ("POST", "/open311/v2/requests.json", tokens.REFERRALS_WRITE),
    ("GET", "/open311/v2/requests.json", tokens.REFERRALS_READ),
    ("GET", "/open311/v2/requests", tokens.REFERRALS_READ),
)
BEARER_CHALLENGE = 'Bearer realm="hotline"'
INSUFFICIENT_SCOPE = N_("This token lacks the scope %(scope)s; ask the hotline's administrator for a token with it.")


@dataclass(frozen=True)
class Caller:
    token_id: int
    source: str | None
    role: str | None
    user_id: int | None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> str:
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"source:{self.source}" if self.source else f"token:{self.token_id}"

    @property
    def may_see_phones(self) -> bool:
        return self.role in STAFF_ROLES

    def has_scope(self, scope: str) -> bool:
        """Source tokens need the scope itself; a staff token's role decides instead."""
        return self.role in STAFF_ROLES or scope in self.scopes


def authenticate() -> Caller:
    """Find the caller's token from the Authorization header; raise 401 for a missing, unknown or revoked one.

    The 401 carries the Bearer challenge of RFC 6750, with error="invalid_token" when a token was sent.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        error = ApiError(401, "unauthorized", N_("Invalid or missing API token."))
        error.headers["WWW-Authenticate"] = BEARER_CHALLENGE
        raise error
    try:
        return authenticate_secret(secret)
    except ApiError as error:
        error.headers["WWW-Authenticate"] = f'{BEARER_CHALLENGE}, error="invalid_token"'
        raise


def authenticate_secret(secret: str | None) -> Caller:
    """Find the token with this secret and record its use; raise 401 for a missing, unknown or revoked one."""
    secret = (secret or "").strip()
    if not secret:
        raise ApiError(401, "unauthorized", N_("Invalid or missing API token."))

    runtime = current_app.extensions["hotline"]
    token = tokens.identify(runtime.engine, secret, now(), request_connection())
    if token is None:
        raise ApiError(401, "unauthorized", N_("Invalid or missing API token."))
    return Caller(token.id, token.source, token.role, token.user_id, token.scopes)


@dataclass(frozen=True)
class RememberedCaller:
    """A source token's identity as this process last authenticated it, not yet checked for this request."""

    identity: tokens.TokenIdentity
    token_hash: str

    def as_caller(self) -> Caller:
        identity = self.identity
        return Caller(identity.id, identity.source, identity.role, identity.user_id, identity.scopes)


def remembered_caller(scope: str) -> RememberedCaller | None:
    """Return the remembered identity of the request's source token when it has `scope`, or None.

    Nothing is read from the database, so only a statement that checks the token itself may act on it
    (hotline.optimistic_intake).
    """
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return None
    token_hash = tokens.digest(secret)
    identity = tokens.remembered(token_hash)
    if identity is None or identity.source is None or scope not in identity.scopes:
        return None
    return RememberedCaller(identity, token_hash)


def request_connection() -> RequestConnection | None:
    """Return the request's PostgreSQL connection (hotline.request_connection), or None on SQLite.

    The connection is checked out on first use.

    `close_request_connection` returns it to its pool when the request ends.
    """
    if "request_connection" not in g:
        g.request_connection = current_app.extensions["hotline"].request_connection()
    return g.request_connection


def close_request_connection(_error: BaseException | None = None) -> None:
    connection = g.pop("request_connection", None)
    if connection is not None:
        connection.close()


def required_scope(method: str, rule: str) -> str | None:
    """Return the scope a source token needs for `method` on the URL rule `rule`, or None."""
    for rule_method, prefix, scope in SCOPE_RULES:
        if rule_method not in (None, method):
            continue
        if rule == prefix or rule.startswith(prefix + "/"):
            return scope
    return None


def require(source: bool = False, roles: tuple[str, ...] = ()):
    """Allow a referral-source token (`source=True`) and/or staff tokens of `roles`, then check the body.

    1. A source token must hold the scope SCOPE_RULES names for the route. A caller without it gets 403
       `insufficient_scope` naming the scope, with the WWW-Authenticate header of RFC 6750.
    2. A JSON body is checked against the schema hotline.api.schemas declares for the endpoint, so the
       view only runs on a body of the documented shape.
    """

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            caller = authenticate()
            allowed = (source and caller.source is not None) or (caller.role in roles)
            if not allowed:
                raise ApiError(403, "forbidden", N_("This token may not do that."))
            scope = required_scope(request.method, request.url_rule.rule)
            if scope is not None and not caller.has_scope(scope):
                return insufficient_scope(scope)
            g.caller = caller
            schemas.check_request_body(request.endpoint)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def insufficient_scope(scope: str):
    response, status = error_response(403, "insufficient_scope", INSUFFICIENT_SCOPE, params={"scope": scope})
    response.headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'
    return response, status
