"""The signed-link page where an agency accepts or declines an offer without logging in.

The link's token is the offer id signed with the secret key, so only the agency that received the SMS
can open it; it works only while the offer is pending and before its deadline.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from hotline.clock import local, now
from hotline.dispatch.offers import answer_offer, has_arrived, offer_id_from_token, record_arrival
from hotline.i18n import current_language
from hotline.models import Agency, Offer, Ticket, Town
from hotline.vocabulary import DECLINE_REASONS, FINAL_STATUSES, NEEDS, label

bp = Blueprint("offers", __name__, url_prefix="/offers")


def runtime():
    return current_app.extensions["hotline"]


@bp.route("/<token>", methods=["GET", "POST"])
def offer_page(token: str):
    offer_id = offer_id_from_token(runtime().settings.secret_key, token)
    if offer_id is None:
        abort(404)

    message = None
    if request.method == "POST":
        message = _answer(offer_id, request.form.get("action"))

    with runtime().transaction() as session:
        offer = session.get(Offer, offer_id)
        if offer is None:
            abort(404)
        ticket = session.get(Ticket, offer.ticket_id)
        agency = session.get(Agency, offer.agency_id)
        town = session.get(Town, ticket.town_code) if ticket.town_code else None
        tz = runtime().settings.timezone
        return render_template(
            "offer.html", offer=offer, ticket=ticket, agency=agency, town=town, message=message,
            needs=[label(NEEDS, need) for need in ticket.needs or []],
            accept_by=local(offer.accept_by, tz).strftime("%Y-%m-%d %H:%M"),
            open=offer.state == "pending" and offer.accept_by > now(), language=current_language(),
            decline_reasons=[(code, label(DECLINE_REASONS, code, current_language())) for code in DECLINE_REASONS],
            may_report_arrival=offer.state == "accepted" and ticket.status not in FINAL_STATUSES
            and not has_arrived(session, ticket.id, offer.id),
        )


def _answer(offer_id: int, action: str | None) -> str:
    if action not in ("accept", "decline", "arrive"):
        abort(400)
    with runtime().transaction() as session:
        offer = session.get(Offer, offer_id)
        if offer is None:
            abort(404)
        actor = f"agency:{offer.agency_id}"
    if action == "arrive":
        return record_arrival(runtime(), offer_id, actor, now()).message
    reason = (request.form.get("reason") or "").strip()[:300] or None
    decline_code = request.form.get("decline_code")
    return answer_offer(runtime(), offer_id, action == "accept", actor, reason, now(),
                        decline_code=decline_code if decline_code in DECLINE_REASONS else None).message
