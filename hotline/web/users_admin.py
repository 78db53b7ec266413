"""The admins' account page: every account with its role, state, lockout and last login, with buttons to
clear a lockout and to deactivate or activate an account. Deactivating also ends the account's sessions
and revokes its API tokens (see hotline.accounts.set_active)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlmodel import Session

from hotline import accounts
from hotline.clock import now
from hotline.i18n import current_language
from hotline.models import User
from hotline.validation import InputError
from hotline.vocabulary import label
from hotline.web import auth, display

log = logging.getLogger("hotline.web.users_admin")

bp = Blueprint("web_users_admin", __name__, url_prefix="/admin/users")


def runtime():
    return current_app.extensions["hotline"]


@bp.get("")
@auth.roles_required(accounts.ADMIN)
def users_page():
    language = current_language()
    tz = runtime().settings.timezone
    at = now()
    with runtime().transaction() as session:
        logins = accounts.last_logins(session)
        rows = [_user_row(session, user, logins, at, tz, language) for user in accounts.all_users(session)]
    return render_template("users_admin.html", users=rows, language=language)


def _user_row(session: Session, user: User, logins, at, tz, language: str) -> dict[str, Any]:
    locked_until = auth.locked_until(session, user.username, at)
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": label(accounts.ROLE_LABELS, user.role, language),
        "active": user.active,
        "locked_until": display.show_time(locked_until, tz),
        "last_login": display.show_time(logins.get(user.id), tz),
        "is_self": user.id == current_user.id,
    }


@bp.post("/<int:user_id>/unlock")
@auth.roles_required(accounts.ADMIN)
def unlock(user_id: int):
    with runtime().transaction() as session:
        user = _user_or_404(session, user_id)
        unlocked = auth.unlock(session, user, current_user.id, now(), request.remote_addr)
        username = user.username
    if unlocked:
        flash(gettext("The login lockout of %(username)s is cleared.", username=username), "success")
    else:
        flash(gettext("%(username)s was not locked out.", username=username), "info")
    return redirect(url_for("web_users_admin.users_page"))


@bp.post("/<int:user_id>/deactivate")
@auth.roles_required(accounts.ADMIN)
def deactivate(user_id: int):
    return _set_active(user_id, False)


@bp.post("/<int:user_id>/activate")
@auth.roles_required(accounts.ADMIN)
def activate(user_id: int):
    return _set_active(user_id, True)


def _set_active(user_id: int, active: bool):
    try:
        with runtime().transaction() as session:
            user = _user_or_404(session, user_id)
            username = user.username
            change = accounts.set_active(session, user, active, current_user.id, now(), request.remote_addr)
            revoked_before = accounts.revoked_token_count(session, user) if active else 0
    except InputError as error:
        flash(gettext(error.template, **error.params), "error")
        return redirect(url_for("web_users_admin.users_page"))

    flash(_outcome_message(username, active, change.changed), "success" if change.changed else "info")
    if change.revoked_tokens:
        flash(gettext("Revoked the API tokens of %(username)s, which stop working at once: %(prefixes)s.",
                      username=username, prefixes=", ".join(change.revoked_tokens)), "info")
    if change.changed and revoked_before:
        flash(gettext("API tokens revoked earlier stay revoked; issue a new one with hotline tokens create if "
                      "%(username)s needs the API.", username=username), "info")
    return redirect(url_for("web_users_admin.users_page"))


def _outcome_message(username: str, active: bool, changed: bool) -> str:
    if active:
        return gettext("%(username)s is active again.", username=username) if changed else \
            gettext("%(username)s was already active.", username=username)
    if changed:
        return gettext("%(username)s is deactivated and can no longer log in; every open session has ended.",
                       username=username)
    return gettext("%(username)s was already inactive.", username=username)


def _user_or_404(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        abort(404)
    return user
