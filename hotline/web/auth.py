"""Staff login with username and password, Flask-Login sessions, roles, lockout and the login audit.

Five failed passwords for one username within LOCKOUT_WINDOW lock that username until
LOCKOUT_WINDOW has passed since the earliest of those five. A successful login clears the count, and
so does an admin's unlock, recorded as a LoginAttempt row with the outcome "unlocked". Every attempt,
refused or not, is one LoginAttempt row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from sqlalchemy import or_
from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from hotline import accounts
from hotline.clock import as_aware_utc, now
from hotline.i18n import current_language
from hotline.models import LoginAttempt, User
from hotline.referrers import is_referrer
from hotline.validation import N_
from hotline.vocabulary import label
from hotline.web.display import LOGIN_OUTCOMES, show_time

log = logging.getLogger("hotline.web.auth")

bp = Blueprint("web_auth", __name__)

MAX_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
AUDIT_PAGE_SIZE = 200
SUPERVISORS = ("supervisor", "admin")
FAILED_OUTCOMES = ("bad_password", "unknown_user", "inactive")
UNLOCKED = "unlocked"
AUDIT_OUTCOMES = {**LOGIN_OUTCOMES, UNLOCKED: ("管理员解除锁定", "Unlocked by an admin")}
# Checked when the username is unknown, so a wrong name takes as long as a wrong password.
_UNKNOWN_USER_HASH = generate_password_hash("no such user")


@dataclass(frozen=True)
class StaffUser(UserMixin):
    """The logged-in staff member, detached from any database session."""

    id: int
    username: str
    display_name: str
    role: str
    session_version: int = 0

    def get_id(self) -> str:
        """Return the id Flask-Login stores in the session: "USER_ID:SESSION_VERSION"."""
        return f"{self.id}:{self.session_version}"

    @property
    def actor(self) -> str:
        return f"user:{self.id}"

    @property
    def is_supervisor(self) -> bool:
        return self.role in SUPERVISORS


def runtime():
    return current_app.extensions["hotline"]


def init_login(app) -> LoginManager:
    """Attach Flask-Login to `app`; anonymous visitors of a protected page are sent to the login page."""
    manager = LoginManager(app)
    manager.login_view = "web_auth.login"
    manager.login_message = N_("Please log in to continue.")
    manager.login_message_category = "info"
    manager.localize_callback = gettext
    manager.user_loader(load_user)
    return manager


def load_user(session_id: str) -> StaffUser | None:
    """Load the session's user from its "USER_ID:SESSION_VERSION" id, or return None to end the session.

    A session ends when its account is deactivated or when its version differs from the account's,
    because a password reset or a deactivation raised the account's version. A plain "USER_ID", written before sessions
    carried a version, is accepted while the account's version is still 0.
    """
    user_id, separator, version = session_id.partition(":")
    if not user_id.isdigit() or (separator and not version.isdigit()):
        return None
    with runtime().transaction() as session:
        user = session.get(User, int(user_id))
        if user is None or not user.active:
            return None
        if int(version or 0) != user.session_version:
            # Debug level, because an ended session repeats this on every request until it logs in again.
            log.debug("Web auth: session of user %s ended: version %s, account at %s", user.id, version or 0,
                      user.session_version)
            return None
        return staff_user(user)


def staff_user(user: User) -> StaffUser:
    return StaffUser(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                     session_version=user.session_version)


def roles_required(*roles: str):
    """Let logged-in staff of `roles` through; others get 403, anonymous visitors the login page."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(landing_page(current_user.role))
    error = None
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()[:64]
        password = request.form.get("password") or ""
        user, error = authenticate(username, password)
        if user is not None:
            login_user(user)
            return redirect(safe_next(request.args.get("next"), user.role))
    status = 401 if error else 200
    # Referrers reach this page from the portal, so it greets them as the portal does, not as staff.
    for_portal = (request.args.get("next") or "").startswith("/portal")
    return render_template("login.html", error=error, username=username, for_portal=for_portal,
                           language=current_language()), status


@bp.post("/logout")
@login_required
def logout():
    log.info("Web auth: %s logged out", current_user.username)
    logout_user()
    return redirect(url_for("web_auth.login"))


@bp.get("/audit/logins")
@roles_required(*SUPERVISORS)
def login_audit():
    with runtime().transaction() as session:
        attempts = session.exec(
            select(LoginAttempt).order_by(LoginAttempt.at.desc(), LoginAttempt.id.desc()).limit(AUDIT_PAGE_SIZE)
        ).all()
    language = current_language()
    tz = runtime().settings.timezone
    rows = [{"at": show_time(attempt.at, tz), "username": attempt.username, "succeeded": attempt.succeeded,
             "outcome": label(AUDIT_OUTCOMES, attempt.outcome, language), "remote_addr": attempt.remote_addr or ""}
            for attempt in attempts]
    return render_template("audit_logins.html", attempts=rows, language=language)


def authenticate(username: str, password: str) -> tuple[StaffUser | None, str | None]:
    """Check a login and record it. Return the user, or None and the message to show."""
    at = now()
    with runtime().transaction() as session:
        user = session.exec(select(User).where(User.username == username)).first() if username else None
        outcome = _outcome(session, username, password, user, at)
        session.add(LoginAttempt(
            username=username, user_id=user.id if user else None, at=at, succeeded=outcome == "ok",
            outcome=outcome, remote_addr=(request.remote_addr or "")[:45] or None,
            # PostgreSQL's text cannot hold U+0000, which a header may carry on servers that pass it on.
            user_agent=(request.user_agent.string or "").replace("\x00", "")[:200] or None,
        ))
        log.info("Web auth: login as %r from %s: %s", username, request.remote_addr, outcome)
        if outcome == "ok":
            return staff_user(user), None
    if outcome == "locked":
        return None, gettext("Too many failed attempts. This account is locked for 15 minutes; "
                             "ask the supervisor on duty if you need to get in sooner.")
    return None, gettext("Wrong username or password.")


def _outcome(session: Session, username: str, password: str, user: User | None, at: datetime) -> str:
    if is_locked(session, username, at):
        return "locked"
    if user is None:
        check_password_hash(_UNKNOWN_USER_HASH, password)
        return "unknown_user"
    if not check_password_hash(user.password_hash, password):
        return "bad_password"
    return "ok" if user.active else "inactive"


def is_locked(session: Session, username: str, at: datetime) -> bool:
    """True when `username` had MAX_FAILURES failed passwords within LOCKOUT_WINDOW and no login or unlock since."""
    return locked_until(session, username, at) is not None


def locked_until(session: Session, username: str, at: datetime) -> datetime | None:
    """Return when the lockout of `username` ends, or None when it is not locked out at `at`.

    The lockout lasts while MAX_FAILURES failures after the last login or unlock lie within
    LOCKOUT_WINDOW, so it ends LOCKOUT_WINDOW after the oldest of the latest MAX_FAILURES failures.
    """
    since = at - LOCKOUT_WINDOW
    last_reset = session.exec(
        select(LoginAttempt.at).where(LoginAttempt.username == username)
        .where(or_(LoginAttempt.succeeded, LoginAttempt.outcome == UNLOCKED))
        .where(LoginAttempt.at > since).order_by(LoginAttempt.at.desc()).limit(1)
    ).first()
    failures = session.exec(
        select(LoginAttempt.at).where(LoginAttempt.username == username)
        .where(LoginAttempt.outcome.in_(FAILED_OUTCOMES))
        .where(LoginAttempt.at > (last_reset or since)).order_by(LoginAttempt.at.desc()).limit(MAX_FAILURES)
    ).all()
    if len(failures) < MAX_FAILURES:
        return None
    return as_aware_utc(failures[-1]) + LOCKOUT_WINDOW


def unlock(session: Session, user: User, admin_id: int, at: datetime, remote_addr: str | None = None) -> bool:
    """Clear the login lockout of `user` and audit it; return False, writing nothing, when it is not locked.

    The "unlocked" LoginAttempt row ends the run of failures, so the next wrong password starts a new count.
    """
    if not is_locked(session, user.username, at):
        return False
    session.add(LoginAttempt(username=user.username, user_id=user.id, at=at, succeeded=False, outcome=UNLOCKED,
                             remote_addr=(remote_addr or "")[:45] or None))
    accounts.record_change(session, user, "unlocked", admin_id, at, remote_addr)
    return True


def landing_page(role: str) -> str:
    """Return the first page after login: the referral portal for referrers, the queue for staff."""
    if is_referrer(role):
        return url_for("web_portal.my_referrals")
    return url_for("web_queue.queue")


def safe_next(target: str | None, role: str) -> str:
    """The page to go to after login: a path on this site, never another host."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith(("//", "/\\")):
            return target
    return landing_page(role)
