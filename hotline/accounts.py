"""Staff and referrer accounts as admins manage them: the list, activation and password resets.

Every change is one UserChange row naming the admin who made it, written in the same transaction, and
one log line. Unlocking a login lockout lives in hotline.web.auth next to the lockout it clears.

A deactivation or a password reset raises the user's session_version, which ends every login session
opened before it (hotline.web.auth.load_user compares the two). A deactivation also revokes the user's
API tokens, one token_revoked row each; activating the user again leaves them revoked.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select
from werkzeug.security import generate_password_hash

from hotline import tokens
from hotline.models import ApiToken, LoginAttempt, User, UserChange
from hotline.validation import N_, InputError
from hotline.vocabulary import SOURCES

log = logging.getLogger("hotline.accounts")

ADMIN = "admin"
ROLE_LABELS = {
    "operator": ("话务员", "Operator"),
    "supervisor": ("值班主管", "Supervisor"),
    "admin": ("管理员", "Administrator"),
    **{code: labels for code, labels in SOURCES.items() if code != "resident"},
}
ACTIONS = {
    "unlocked": ("解除登录锁定", "Login lockout cleared"),
    "deactivated": ("停用", "Deactivated"),
    "activated": ("启用", "Activated"),
    "password_reset": ("重置密码", "Password reset"),
    "token_revoked": ("吊销 API 令牌", "API token revoked"),
}
# 12 random bytes give a 16-character password of letters, digits, "-" and "_".
PASSWORD_BYTES = 12


def actor_of(admin_id: int) -> str:
    return f"user:{admin_id}"


def find_user(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def all_users(session: Session) -> list[User]:
    """Return every account, ordered by role and username."""
    return list(session.exec(select(User).order_by(User.role, User.username)).all())


def last_logins(session: Session) -> dict[int, datetime]:
    """Return the instant of each user's latest successful login, by user id."""
    rows = session.exec(
        select(LoginAttempt.user_id, func.max(LoginAttempt.at)).where(LoginAttempt.outcome == "ok")
        .where(LoginAttempt.user_id.is_not(None)).group_by(LoginAttempt.user_id)
    ).all()
    return {user_id: at for user_id, at in rows}


def revoked_token_count(session: Session, user: User) -> int:
    """Count the API tokens that act as `user` and are revoked."""
    return session.exec(select(func.count(ApiToken.id)).where(ApiToken.user_id == user.id)
                        .where(ApiToken.revoked_at.is_not(None))).one()


def record_change(session: Session, user: User, action: str, admin_id: int, at: datetime,
                  remote_addr: str | None = None, detail: str | None = None) -> UserChange:
    """Add the audit row of one change to `user`, and log it."""
    change = UserChange(user_id=user.id, action=action, actor=actor_of(admin_id), at=at,
                        remote_addr=(remote_addr or "")[:45] or None, detail=detail)
    session.add(change)
    log.info("Accounts: %s of user %s (%s)%s by user %s from %s", action, user.id, user.username,
             f" ({detail})" if detail else "", admin_id, remote_addr or "the command line")
    return change


@dataclass(frozen=True)
class ActivationChange:
    """The outcome of set_active: whether the account changed, and the prefixes of the tokens it revoked."""

    changed: bool
    revoked_tokens: tuple[str, ...] = ()


def set_active(session: Session, user: User, active: bool, admin_id: int, at: datetime,
               remote_addr: str | None = None) -> ActivationChange:
    """Activate or deactivate `user`; write nothing when it already is so.

    A deactivation ends the user's login sessions and revokes its live API tokens at once. Activating
    the user again restores neither. Admins cannot deactivate themselves, so the admin making the
    change stays active and can undo it.
    """
    if user.active == active:
        return ActivationChange(changed=False)
    if not active and user.id == admin_id:
        raise InputError("own_account", N_("You cannot deactivate your own account."), field="username", status=409)

    user.active = active
    if not active:
        end_sessions(user)
    session.add(user)
    record_change(session, user, "activated" if active else "deactivated", admin_id, at, remote_addr)
    if active:
        return ActivationChange(changed=True)
    return ActivationChange(changed=True, revoked_tokens=revoke_tokens(session, user, admin_id, at, remote_addr))


def revoke_tokens(session: Session, user: User, admin_id: int, at: datetime,
                  remote_addr: str | None = None) -> tuple[str, ...]:
    """Revoke every live API token that acts as `user`, one audit row each; return their prefixes."""
    live = session.exec(select(ApiToken).where(ApiToken.user_id == user.id).where(ApiToken.revoked_at.is_(None))
                        .order_by(ApiToken.id)).all()
    for token in live:
        tokens.revoke(session, token, at)
        record_change(session, user, "token_revoked", admin_id, at, remote_addr,
                      detail=f"{token.prefix} ({token.name})"[:200])
    return tuple(token.prefix for token in live)


def end_sessions(user: User) -> None:
    """End every login session of `user` at its next request; the caller adds `user` to its session."""
    user.session_version += 1


def reset_password(session: Session, user: User, admin_id: int, at: datetime, remote_addr: str | None = None) -> str:
    """Give `user` a new random password and return it; only its hash is stored, so it is shown once.

    Every login session of `user`, opened with the old password, ends at its next request.
    """
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    user.password_hash = generate_password_hash(password)
    end_sessions(user)
    session.add(user)
    record_change(session, user, "password_reset", admin_id, at, remote_addr)
    return password


def require_admin(session: Session, username: str) -> User:
    """Return the active admin named `username`; raise InputError when there is none."""
    admin = find_user(session, username)
    if admin is None or admin.role != ADMIN or not admin.active:
        raise InputError("not_admin", N_("%(username)s is not an active admin."), field="by", status=403,
                         username=username)
    return admin
