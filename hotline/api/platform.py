"""JSON API for platforms with a source token (社区云, 12345): their referrals' status and their webhook.

A platform sees only referrals filed under its token's source, never another source's, and never the
resident's phone number in full.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, current_app, g, jsonify, request, url_for
from sqlmodel import Session, select

from hotline import webhooks
from hotline.api.auth import require
from hotline.api.bodies import json_object
from hotline.api.errors import ApiError
from hotline.api.params import int_arg
from hotline.api.views import ticket_summary, town_names
from hotline.clock import isoformat, now
from hotline.i18n import current_language
from hotline.models import ApiToken, Referral, SlaClock, Ticket, TicketEvent
from hotline.sla.clocks import clock_view
from hotline.validation import N_, unknown_value
from hotline.vocabulary import STATUSES, label

bp = Blueprint("api_platform", __name__, url_prefix="/api/v1")

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
DELIVERY_STATES = ("pending", "delivered", "failed")


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/referrals/<path:external_id>")
@require(source=True)
def get_referral(external_id: str):
    """Return the ticket of one of the source's referrals with its status history.

    An external_id may contain "/", which a client sends as is or as %2F (see `referral_location`).
    """
    with runtime().transaction() as session:
        referral = session.exec(
            select(Referral).where(Referral.source == g.caller.source).where(Referral.external_id == external_id)
        ).first()
        if referral is None:
            raise ApiError(404, "not_found", N_("Referral %(external_id)s was not found."), field="external_id",
                           external_id=external_id)
        return jsonify(referral_view(session, session.get(Ticket, referral.ticket_id), current_language()))


def referral_view(session: Session, ticket: Ticket, language: str) -> dict[str, Any]:
    """The ticket as its referring platform sees it: summary, SLA clocks and status changes, no personal data."""
    view = ticket_summary(ticket, town_names(session), may_see_phones=False, language=language)
    clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)).all()
    changes = session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).where(TicketEvent.kind == "status")
        .order_by(TicketEvent.at, TicketEvent.id)
    ).all()
    view.update({
        "resolved_at": isoformat(ticket.resolved_at),
        "sla": [clock_view(clock) for clock in clocks],
        "history": [
            {"at": isoformat(event.at), "from": event.from_value, "to": event.to_value,
             "status_label": label(STATUSES, event.to_value, language)}
            for event in changes
        ],
    })
    return view


@bp.put("/webhook")
@require(source=True)
def register_webhook():
    """Register or replace the token's webhook; the response carries the new secret, shown only this once."""
    checked = webhooks.check_url(json_object()["url"], runtime().settings.webhook_allow_loopback)
    with runtime().transaction() as session:
        token = session.get(ApiToken, g.caller.token_id)
        webhook, created, secret = webhooks.register(session, token, checked, now())
        view = {**webhooks.webhook_view(webhook), "secret": secret}
    response = jsonify(view)
    response.status_code = 201 if created else 200
    response.headers["Location"] = url_for("api_platform.get_webhook")
    return response


@bp.get("/webhook")
@require(source=True)
def get_webhook():
    with runtime().transaction() as session:
        return jsonify(webhooks.webhook_view(_webhook_or_404(session)))


@bp.delete("/webhook")
@require(source=True)
def delete_webhook():
    with runtime().transaction() as session:
        webhooks.remove(session, _webhook_or_404(session))
    return "", 204


@bp.get("/webhook/deliveries")
@require(source=True)
def list_deliveries():
    """List the webhook's deliveries, newest first, optionally only those pending, delivered or failed."""
    limit = int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_arg("offset", 0, 0, 10_000_000)
    state = request.args.get("state")
    if state is not None and state not in DELIVERY_STATES:
        raise unknown_value("state", state, DELIVERY_STATES)
    with runtime().transaction() as session:
        rows = webhooks.deliveries(session, _webhook_or_404(session), limit + 1, offset, state)
    items = [webhooks.delivery_view(message, number) for message, number in rows[:limit]]
    return jsonify({"items": items, "next": _next_url(offset + limit, len(rows) > limit)})


def _webhook_or_404(session: Session):
    webhook = webhooks.find_for_token(session, g.caller.token_id)
    if webhook is None:
        raise ApiError(404, "not_found", N_("This token has no webhook; register one with PUT /api/v1/webhook."))
    return webhook


def _next_url(offset: int, more: bool) -> str | None:
    if not more:
        return None
    args = request.args.to_dict()
    args["offset"] = str(offset)
    return url_for("api_platform.list_deliveries", _external=True, **args)


def referral_location(external_id: str) -> str:
    """Return the URL path of a referral, with every character of its external_id that URLs reserve encoded.

    "/" becomes %2F. Intake rejects the ids that no encoding keeps a single segment: "." and "..", which
    browsers resolve even as %2E, and a leading "/", which Werkzeug's slash merging redirects.
    """
    return f"{request.script_root}/api/v1/referrals/{quote(external_id, safe='')}"
