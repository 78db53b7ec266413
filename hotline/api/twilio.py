"""Twilio webhooks: voice, menu, call status, recording and SMS replies.

Each request's X-Twilio-Signature is checked against the public URL before anything else; a bad one is
403 and changes nothing. Events for a number that is not the hotline's get empty TwiML.
"""

from __future__ import annotations

import logging
from functools import wraps

from flask import Blueprint, Response, current_app, request, url_for
from sqlmodel import select
from werkzeug.exceptions import RequestEntityTooLarge

from hotline import intake
from hotline.api.errors import ApiError, log_too_large
from hotline.api.idempotency import run_idempotent
from hotline.clock import now
from hotline.dispatch.offers import answer_sms
from hotline.events import record_event
from hotline.models import Call, Ticket
from hotline.phones import normalise_or_none
from hotline.telephony import twiml
from hotline.telephony.signatures import is_valid_signature, public_url
from hotline.text_guard import UnstorableCharacter
from hotline.validation import N_

log = logging.getLogger("hotline.twilio")

bp = Blueprint("twilio", __name__, url_prefix="/twilio")


def runtime():
    return current_app.extensions["hotline"]


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(error: RequestEntityTooLarge):
    """Reject an oversized webhook with 413 and empty TwiML, which ends a call and sends no SMS reply.

    The signature covers the whole body, so the request cannot be authenticated, and nothing of it is stored.
    """
    log_too_large()
    return Response(twiml.empty(), status=413, mimetype="text/xml")


@bp.errorhandler(UnstorableCharacter)
def _unstorable_character(_error: UnstorableCharacter):
    """Return 400 with empty TwiML for a webhook whose form carries U+0000 or an unpaired surrogate.

    Twilio reads TwiML, so the call ends as after any empty answer instead of playing an application error.
    """
    return Response(twiml.empty(), status=400, mimetype="text/xml")


def signed(view):
    """Reject requests whose Twilio signature does not match the URL Twilio called."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        settings = runtime().settings
        url = public_url(request.url, settings.public_base_url)
        signature = request.headers.get("X-Twilio-Signature")
        if not settings.twilio_auth_token or not is_valid_signature(
            settings.twilio_auth_token, url, request.form.to_dict(), signature
        ):
            log.warning("Twilio: rejected %s with an invalid signature (call %s)", request.path,
                        request.form.get("CallSid") or request.form.get("MessageSid"))
            raise ApiError(403, "invalid_signature", N_("Invalid Twilio signature."))
        return view(*args, **kwargs)

    return wrapped


def _menu_url() -> str:
    """The menu action as Twilio must call it: on the public URL, so its signature validates."""
    return public_url(url_for("twilio.menu", _external=True), runtime().settings.public_base_url)


def _xml(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def _is_our_number() -> bool:
    raw = request.form.get("To") or request.form.get("Called")
    called = normalise_or_none(raw) or raw
    ours = normalise_or_none(runtime().settings.hotline_number)
    if called and called != ours:
        log.warning("Twilio: event for %s, not the hotline number; ignored (call %s)", called,
                    request.form.get("CallSid"))
        return False
    return True


def _intake(handler) -> str:
    """Run a call intake step; a concurrent retry of the same CallSid is absorbed by `run_idempotent`."""
    form = request.form.to_dict()
    return run_idempotent(runtime(), lambda session: handler(session, runtime(), form, now()).ticket.number)


@bp.post("/voice")
@signed
def voice():
    if not _is_our_number():
        return _xml(twiml.hangup())
    _intake(intake.open_call)
    return _xml(twiml.menu(_menu_url()))


@bp.post("/voice/menu")
@signed
def menu():
    if not _is_our_number():
        return _xml(twiml.hangup())
    _intake(intake.choose_menu)
    return _xml(twiml.menu_choice(request.form.get("Digits", ""), _menu_url()))


@bp.post("/voice/status")
@signed
def status():
    if not _is_our_number():
        return _xml(twiml.hangup())
    _intake(intake.record_call_status)
    return _xml(twiml.hangup())


@bp.post("/voice/recording")
@signed
def recording():
    """Attach a voicemail recording's URL to the call's ticket."""
    call_sid = request.form.get("CallSid", "")
    recording_url = request.form.get("RecordingUrl")
    with runtime().transaction() as session:
        call = session.exec(select(Call).where(Call.call_sid == call_sid)).first()
        if call is not None and recording_url:
            ticket = session.get(Ticket, call.ticket_id)
            record_event(session, ticket, "recording", actor="twilio", to_value=recording_url[:200], at=now(),
                         data={"call_sid": call_sid, "duration": request.form.get("RecordingDuration")})
    return _xml(twiml.hangup())


@bp.post("/sms")
@signed
def sms():
    """Handle an agency's SMS reply to an offer, such as "<code> 接" or "<code> 拒"."""
    sender = normalise_or_none(request.form.get("From"))
    reply = answer_sms(runtime(), sender, request.form.get("Body", ""), now())
    return _xml(twiml.sms_reply(reply))
