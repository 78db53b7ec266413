"""API tokens: random bearer secrets stored only as SHA-256 digests.

A token belongs either to a referral source (its referrals are filed under that source, whatever the
body contains) or to a staff role (operator, supervisor, admin) for the read and workflow API.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Session, select

from hotline.models import ApiToken
from hotline.vocabulary import REFERRAL_SOURCES, ROLES

TOKEN_PREFIX = "hl_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, source: str | None = None, role: str | None = None,
                 user_id: int | None = None) -> str:
    """Store a new token for exactly one of `source` or `role`; return the secret, shown only once."""
    if (source is None) == (role is None):
        raise ValueError("a token belongs to exactly one source or one role")
    if source is not None and source not in REFERRAL_SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(REFERRAL_SOURCES)}")
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")

    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=digest(secret), prefix=secret[:10], name=name, source=source, role=role,
                         user_id=user_id))
    session.flush()
    return secret


def find_token(session: Session, secret: str) -> ApiToken | None:
    """Return the live token with this secret, or None when it is unknown or revoked."""
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == digest(secret))).first()
    if token is None or token.revoked_at is not None:
        return None
    return token


def touch(session: Session, token: ApiToken, now: datetime) -> None:
    """Record use, at most once a minute per token so busy integrations do not write on every call."""
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() >= 60:
        token.last_used_at = now
        session.add(token)
