"""Bearer-token authentication for the JSON API."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import current_app, g, request

from hotline import tokens
from hotline.api.errors import ApiError
from hotline.clock import now
from hotline.validation import N_

STAFF_ROLES = ("operator", "supervisor", "admin")


@dataclass(frozen=True)
class Caller:
    token_id: int
    source: str | None
    role: str | None
    user_id: int | None

    @property
    def actor(self) -> str:
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"source:{self.source}" if self.source else f"token:{self.token_id}"

    @property
    def may_see_phones(self) -> bool:
        return self.role in STAFF_ROLES


def authenticate() -> Caller:
    """Find the caller's token; raise 401 for a missing, unknown or revoked one."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "unauthorized", N_("Invalid or missing API token."))

    runtime = current_app.extensions["hotline"]
    with runtime.transaction() as session:
        token = tokens.find_token(session, secret.strip())
        if token is None:
            raise ApiError(401, "unauthorized", N_("Invalid or missing API token."))
        tokens.touch(session, token, now())
        return Caller(token.id, token.source, token.role, token.user_id)


def require(source: bool = False, roles: tuple[str, ...] = ()):
    """Allow a referral-source token (`source=True`) and/or staff tokens of `roles`."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            caller = authenticate()
            allowed = (source and caller.source is not None) or (caller.role in roles)
            if not allowed:
                raise ApiError(403, "forbidden", N_("This token may not do that."))
            g.caller = caller
            return view(*args, **kwargs)

        return wrapped

    return decorator
