"""The admins' API token page: every token with its scopes and last use, revoking one, and issuing a source token.

A new token's secret is stored only as its digest, so the page shows it once, in the response to the form
that created it. That response is not cached, and the secret never goes into the session cookie.
Revocations are logged with the admin, the token and the optional reason.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user
from sqlmodel import Session, select

from hotline import tokens as token_store
from hotline.accounts import ADMIN, ROLE_LABELS
from hotline.clock import now
from hotline.i18n import current_language
from hotline.models import ApiToken, User
from hotline.validation import N_
from hotline.vocabulary import REFERRAL_SOURCES, SOURCES, label
from hotline.web import display
from hotline.web.auth import roles_required

log = logging.getLogger("hotline.web.tokens_admin")

bp = Blueprint("web_tokens_admin", __name__, url_prefix="/admin/tokens")

NAME_MAX = 100
REASON_MAX = 200
MESSAGES = {
    "source": N_("Choose the referral source the token files under."),
    "scopes": N_("Choose at least one thing the token may do."),
    "name": N_("The name is too long: write at most %(limit)s characters."),
    "reason": N_("The reason is too long: write at most %(limit)s characters."),
}


def runtime():
    return current_app.extensions["hotline"]


@bp.get("")
@roles_required(ADMIN)
def tokens_page():
    return _render({"source": "", "name": "", "scopes": list(token_store.DEFAULT_SOURCE_SCOPES)}, {})


@bp.post("")
@roles_required(ADMIN)
def create_source_token():
    """Issue a source token with the chosen scopes and show its secret once."""
    values = {"source": request.form.get("source", ""), "name": (request.form.get("name") or "").strip(),
              "scopes": request.form.getlist("scopes")}
    errors = _form_errors(values)
    if errors:
        return _render(values, errors, status=422)

    name = values["name"] or values["source"]
    with runtime().transaction() as session:
        secret = token_store.create_token(session, name, source=values["source"], scopes=values["scopes"])
    prefix = secret[:token_store.PREFIX_LENGTH]
    log.info("Tokens admin: user %s issued token %s (%s) for source %s with scopes %s", current_user.id, prefix,
             name, values["source"], " ".join(values["scopes"]))

    response, status = _render({"source": "", "name": "", "scopes": list(token_store.DEFAULT_SOURCE_SCOPES)}, {},
                               issued={"secret": secret, "prefix": prefix, "name": name}, status=201)
    return response, status, {"Cache-Control": "no-store"}


@bp.post("/<int:token_id>/revoke")
@roles_required(ADMIN)
def revoke_token(token_id: int):
    reason = (request.form.get("reason") or "").strip()
    if len(reason) > REASON_MAX:
        flash(gettext(MESSAGES["reason"], limit=REASON_MAX), "error")
        return redirect(url_for("web_tokens_admin.tokens_page", _anchor=f"token-{token_id}"))

    with runtime().transaction() as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            abort(404)
        revoked = token_store.revoke(session, token, now())
        prefix, name = token.prefix, token.name

    if revoked:
        log.warning("Tokens admin: user %s revoked token %s (%s); reason: %r", current_user.id, prefix, name,
                    reason or None)
        flash(gettext("Token %(prefix)s (%(name)s) is revoked and stops working at once.", prefix=prefix,
                      name=name), "success")
    else:
        flash(gettext("Token %(prefix)s (%(name)s) was already revoked.", prefix=prefix, name=name), "info")
    return redirect(url_for("web_tokens_admin.tokens_page", _anchor=f"token-{token_id}"))


def _form_errors(values: dict[str, Any]) -> dict[str, str]:
    """Check the new-token form; return one message per invalid field."""
    errors = {}
    if values["source"] not in REFERRAL_SOURCES:
        errors["source"] = gettext(MESSAGES["source"])
    if not values["scopes"] or any(scope not in token_store.SCOPES for scope in values["scopes"]):
        errors["scopes"] = gettext(MESSAGES["scopes"])
    if len(values["name"]) > NAME_MAX:
        errors["name"] = gettext(MESSAGES["name"], limit=NAME_MAX)
    return errors


def _render(values: dict[str, Any], errors: dict[str, str], issued: dict[str, str] | None = None,
            status: int = 200):
    language = current_language()
    tz = runtime().settings.timezone
    with runtime().transaction() as session:
        names = _user_names(session)
        rows = [_token_row(token, names, tz, language) for token in token_store.all_tokens(session)]
    return render_template(
        "tokens_admin.html", tokens=rows, values=values, errors=errors, issued=issued, language=language,
        name_max=NAME_MAX, reason_max=REASON_MAX,
        sources=[(code, label(SOURCES, code, language)) for code in REFERRAL_SOURCES],
        scopes=[(code, label(token_store.SCOPE_LABELS, code, language)) for code in token_store.SCOPES],
    ), status


def _user_names(session: Session) -> dict[int, str]:
    return dict(session.exec(select(User.id, User.display_name)).all())


def _token_row(token: ApiToken, names: dict[int, str], tz, language: str) -> dict[str, Any]:
    if token.source:
        owner = label(SOURCES, token.source, language)
    else:
        owner = label(ROLE_LABELS, token.role, language)
        if token.user_id is not None:
            owner = f"{owner} · {names.get(token.user_id, token.user_id)}"
    return {
        "id": token.id,
        "prefix": token.prefix,
        "name": token.name,
        "is_source": token.source is not None,
        "owner": owner,
        "scopes": [label(token_store.SCOPE_LABELS, scope, language) for scope in token.scopes or []],
        "created_at": display.show_time(token.created_at, tz),
        "last_used_at": display.show_time(token.last_used_at, tz),
        "revoked_at": display.show_time(token.revoked_at, tz),
    }
