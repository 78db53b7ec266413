"""API tokens: random bearer secrets stored only as SHA-256 digests.

A token belongs either to a referral source (its referrals are filed under that source, whatever the
body contains) or to a staff role (operator, supervisor, admin) for the read and workflow API. A source
token may do only what its scopes allow; a staff token's role decides what it may do.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from sqlalchemy import Engine, bindparam, update
from sqlmodel import Session, select

from hotline.driver_sql import driver_statement
from hotline.models import ApiToken
from hotline.request_connection import RequestConnection
from hotline.validation import N_, TemplatedError
from hotline.vocabulary import REFERRAL_SOURCES, ROLES

TOKEN_PREFIX = "hl_"
PREFIX_LENGTH = 10
TOUCH_INTERVAL_SECONDS = 60
REMEMBERED_IDENTITIES = 1024

REFERRALS_WRITE = "referrals:write"
REFERRALS_READ = "referrals:read"
KB_READ = "kb:read"
SCOPES = {
    REFERRALS_WRITE: "file referrals under the token's source",
    REFERRALS_READ: "read the source's own referrals, register a webhook and read its deliveries",
    KB_READ: "read knowledge articles",
}
# Labels shown to staff, Simplified Chinese first, as in hotline.vocabulary.
SCOPE_LABELS = {
    REFERRALS_WRITE: ("提交转介", "File referrals"),
    REFERRALS_READ: ("查看本来源的转介，登记并查看状态回调",
                     "Read its own referrals, register a webhook and read its deliveries"),
    KB_READ: ("查看便民服务信息", "Read knowledge articles"),
}
DEFAULT_SOURCE_SCOPES = (REFERRALS_WRITE, REFERRALS_READ)


class TokenNotFound(TemplatedError, LookupError):
    """No token, or more than one, starts with the given prefix."""


@dataclass(frozen=True)
class TokenIdentity:
    """The identity of a live token: its source or staff role, its user and its scopes."""

    id: int
    source: str | None
    role: str | None
    user_id: int | None
    scopes: frozenset[str]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, source: str | None = None, role: str | None = None,
                 user_id: int | None = None, scopes: Iterable[str] | None = None) -> str:
    """Store a new token for exactly one of `source` or `role`; return the secret, shown only once.

    A source token gets `scopes`, or DEFAULT_SOURCE_SCOPES when none are given. A role token takes no
    scopes.
    """
    if (source is None) == (role is None):
        raise ValueError("a token belongs to exactly one source or one role")
    if source is not None and source not in REFERRAL_SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(REFERRAL_SOURCES)}")
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if role is not None and scopes:
        raise ValueError("a staff token takes no scopes; its role decides what it may do")

    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    granted = normalise_scopes(DEFAULT_SOURCE_SCOPES if scopes is None else scopes) if source else []
    session.add(ApiToken(token_hash=digest(secret), prefix=secret[:PREFIX_LENGTH], name=name, source=source,
                         role=role, user_id=user_id, scopes=granted))
    session.flush()
    return secret


def normalise_scopes(scopes: Iterable[str]) -> list[str]:
    """Return the scopes without repeats in the order of SCOPES; raise ValueError for an unknown one."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; expected one of {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in wanted]


def find_token(session: Session, secret: str) -> ApiToken | None:
    """Return the live token with this secret, or None when it is unknown or revoked."""
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == digest(secret))).first()
    if token is None or token.revoked_at is not None:
        return None
    return token


def find_by_prefix(session: Session, prefix: str) -> ApiToken:
    """Return the one token whose prefix starts with `prefix`; raise TokenNotFound for none or several."""
    prefix = prefix.strip()
    if not prefix:
        raise TokenNotFound(N_("Give the token's prefix, as `hotline tokens list` shows it."))
    rows = session.exec(select(ApiToken).where(ApiToken.prefix.startswith(prefix, autoescape=True))).all()
    if not rows:
        raise TokenNotFound(N_("No token has the prefix %(prefix)s; `hotline tokens list` shows them all."),
                            prefix=prefix)
    if len(rows) > 1:
        raise TokenNotFound(N_("%(count)s tokens start with %(prefix)s (%(found)s); give more of the prefix."),
                            count=len(rows), prefix=prefix, found=", ".join(token.prefix for token in rows))
    return rows[0]


def all_tokens(session: Session) -> list[ApiToken]:
    return list(session.exec(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)).all())


def revoke(session: Session, token: ApiToken, now: datetime) -> bool:
    """Revoke a live token; return False when it was revoked already."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = now
    session.add(token)
    return True


def touch(session: Session, token: ApiToken, now: datetime) -> None:
    """Record use, at most once a minute per token so busy integrations do not write on every call."""
    if _touch_due(token.last_used_at, now):
        token.last_used_at = now
        session.add(token)


def identify(engine: Engine, secret: str, now: datetime,
             connection: RequestConnection | None = None) -> TokenIdentity | None:
    """Return the live token with this secret, or None, and record its use at most once a minute.

    On PostgreSQL the lookup is the first statement of the request's `connection` (see
    hotline.request_connection), in autocommit mode, so a request pays one SELECT instead of a ping,
    BEGIN, SELECT and COMMIT. SQLite keeps a transaction on its own connection, because its engine opens
    every transaction with BEGIN IMMEDIATE.
    """
    token_hash = digest(secret)
    if connection is not None:
        row = connection.first_statement(lambda driver: _look_up_on_driver(driver, token_hash, now))
    else:
        row = _look_up(engine, token_hash, now)
    if row is None:
        forget(token_hash)
        return None
    token_id, source, role, user_id, scopes = row
    identity = TokenIdentity(token_id, source, role, user_id, frozenset(scopes or ()))
    _remember(token_hash, identity)
    return identity


# The identities `identify` found in this process, by digest, the most recent last. An entry proves
# nothing: a statement that acts on it must check the token itself (hotline.optimistic_intake), so a
# revoked token stops working at once.
_remembered: OrderedDict[str, TokenIdentity] = OrderedDict()
_remembered_lock = threading.Lock()


def remembered(token_hash: str) -> TokenIdentity | None:
    """Return the identity `identify` last found for this digest in this process, or None."""
    return _remembered.get(token_hash)


def forget(token_hash: str) -> None:
    with _remembered_lock:
        _remembered.pop(token_hash, None)


def _remember(token_hash: str, identity: TokenIdentity) -> None:
    with _remembered_lock:
        _remembered[token_hash] = identity
        _remembered.move_to_end(token_hash)
        while len(_remembered) > REMEMBERED_IDENTITIES:
            _remembered.popitem(last=False)


def _look_up(engine: Engine, token_hash: str, now: datetime) -> tuple | None:
    with engine.connect() as connection:
        row = connection.execute(_LOOKUP, {"token_hash": token_hash}).first()
        if row is None or row.revoked_at is not None:
            return None
        if _touch_due(row.last_used_at, now):
            connection.execute(_TOUCH, {"token_id": row.id, "now": now})
        connection.commit()
    return row.id, row.source, row.role, row.user_id, row.scopes


def _look_up_on_driver(driver: psycopg.Connection, token_hash: str, now: datetime) -> tuple | None:
    """Run the lookup straight on an autocommit psycopg connection, with statements prepared once per connection.

    Through SQLAlchemy's Connection the same SELECT cost about 170 µs of CPU, and here about 115 µs.
    Running it twice is harmless: the touch sets the same time again.
    """
    lookup = driver_statement(_LOOKUP, ("token_hash",)).text
    row = driver.execute(lookup, {"token_hash": token_hash}, prepare=True).fetchone()
    if row is None:
        return None
    token_id, source, role, user_id, scopes, revoked_at, last_used_at = row
    if revoked_at is not None:
        return None
    if _touch_due(last_used_at, now):
        touch = driver_statement(_TOUCH, ("now", "token_id")).text
        driver.execute(touch, {"token_id": token_id, "now": now}, prepare=True)
    return token_id, source, role, user_id, scopes


# Built once, because building a statement costs about as much CPU as running it (SQLAlchemy 2.1, psycopg 3).
_TABLE = ApiToken.__table__
_LOOKUP = (
    select(_TABLE.c.id, _TABLE.c.source, _TABLE.c.role, _TABLE.c.user_id, _TABLE.c.scopes, _TABLE.c.revoked_at,
           _TABLE.c.last_used_at)
    .where(_TABLE.c.token_hash == bindparam("token_hash"))
)
_TOUCH = update(_TABLE).where(_TABLE.c.id == bindparam("token_id")).values(last_used_at=bindparam("now"))


def _touch_due(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or (now - last_used_at).total_seconds() >= TOUCH_INTERVAL_SECONDS
