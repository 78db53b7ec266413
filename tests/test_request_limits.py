"""Oversized request bodies: 413 in the format each caller reads, with or without Content-Length, and no rows.

Flask's test client always sends a Content-Length, because werkzeug.test.EnvironBuilder measures any
input_stream it is given, so it cannot send a chunked body. The chunked tests therefore serve the app with
werkzeug's server on 127.0.0.1 and send `Transfer-Encoding: chunked` requests to it with http.client. That
server dechunks the body and sets wsgi.input_terminated, as gunicorn does in production.
"""

from __future__ import annotations

import http.client
import json
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import pytest
from sqlmodel import func, select
from web_helpers import csrf_token, log_in
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from hotline.models import Call, OutboxMessage, Referral, Ticket, TicketEvent, User
from hotline.telephony.signatures import compute_signature

LIMIT = 4096
PUBLIC = "https://hotline.example.test"
YINGPU = "310118002"
REFERRAL = {
    "external_id": "SG-20261207-0001",
    "resident": {"name": "高勇", "phone": "13812345678", "town": "盈浦街道"},
    "category": "consultation",
}
OPEN311_REQUEST = {"service_code": "consultation", "phone": "13912345678", "attribute[town]": "盈浦街道",
                   "attribute[external_id]": "12345-20261207-001"}
TWILIO_CALL = {"AccountSid": "AC55555555555555555555555555555555", "CallSid": "CA0001", "CallStatus": "ringing",
               "From": "+8613812345678", "To": "+862159200496", "Direction": "inbound"}


@pytest.fixture
def settings(settings):
    return replace(settings, max_request_bytes=LIMIT)


@dataclass
class Reply:
    status: int
    content_type: str
    text: str

    def json(self):
        return json.loads(self.text)


@dataclass
class LiveServer:
    """The test app served on 127.0.0.1, with the framing headers of every request it received."""

    port: int
    framing: list[tuple[str | None, str | None]]

    def post_chunked(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """POST `body` in 1 KiB chunks with Transfer-Encoding: chunked and no Content-Length."""
        chunks = (body[start:start + 1024] for start in range(0, len(body), 1024))
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
            response = connection.getresponse()
            return Reply(response.status, response.getheader("Content-Type", ""), response.read().decode())
        finally:
            connection.close()


@pytest.fixture
def live_server(app):
    framing = []

    def recorded(environ, start_response):
        framing.append((environ.get("HTTP_TRANSFER_ENCODING"), environ.get("CONTENT_LENGTH") or None))
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, recorded, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="limits-server", daemon=True)
    thread.start()
    yield LiveServer(server.server_port, framing)
    server.shutdown()
    thread.join(timeout=10)


def _row_counts(runtime) -> dict[str, int]:
    with runtime.transaction() as session:
        return {model.__name__: session.exec(select(func.count()).select_from(model)).one()
                for model in (Ticket, Referral, Call, TicketEvent, OutboxMessage)}


def _padded_json(body: dict, size: int) -> bytes:
    """Encode `body` as JSON followed by spaces up to exactly `size` bytes, which is still valid JSON."""
    encoded = json.dumps(body, ensure_ascii=False).encode()
    assert len(encoded) <= size
    return encoded + b" " * (size - len(encoded))


def _padded_form(fields: dict, size: int) -> bytes:
    """Encode `fields` as a urlencoded form followed by `&` up to exactly `size` bytes; parsers skip empty pairs."""
    encoded = urlencode(fields, doseq=True).encode()
    assert len(encoded) <= size
    return encoded + b"&" * (size - len(encoded))


def _api_headers(token: str, language: str = "zh-CN") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept-Language": language}


def _twilio_headers(form: dict) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": compute_signature("test-auth-token", PUBLIC + "/twilio/voice", form)}


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= character <= "\u9fff" for character in text)


@pytest.fixture
def referrer(client, runtime, seeded):
    """A test client logged in as a community worker of 盈浦街道."""
    with runtime.transaction() as session:
        session.add(User(username="worker", display_name="社工 李芳", role="community_worker",
                         phone="+8613700000001", town_code=YINGPU, committee="复兴居委",
                         password_hash=generate_password_hash("test-password")))
    assert log_in(client, "worker").status_code == 302
    return client


@pytest.fixture
def operator(client, seeded):
    assert log_in(client, "operator").status_code == 302
    return client


def _session_headers(client, form_path: str) -> tuple[dict[str, str], str]:
    """The Cookie header of the client's session and its CSRF token, to send a staff form over a socket."""
    token = csrf_token(client, form_path)
    cookie = client.get_cookie("session")
    return {"Cookie": f"session={cookie.value}", "Content-Type": "application/x-www-form-urlencoded"}, token


def _portal_fields(client) -> dict:
    page = client.get("/portal/referrals/new").get_data(as_text=True)
    form_token = page.split('name="form_token" value="', 1)[1].split('"', 1)[0]
    return {"category": "consultation", "resident.name": "陈阿婆家属", "resident.phone": "139 0000 2222",
            "resident.town": YINGPU, "form_token": form_token}


# --- the API, with a Content-Length ----------------------------------------------------------------


def test_api_oversized_with_length(client, seeded, runtime):
    before = _row_counts(runtime)

    response = client.post("/api/v1/referrals", data=_padded_json(REFERRAL, LIMIT + 1),
                           headers=_api_headers(seeded["community_worker"]))

    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_large"
    assert str(LIMIT) in error["message"]
    assert _has_chinese(error["message"])
    assert _row_counts(runtime) == before


def test_api_oversized_message_in_english(client, seeded):
    response = client.post("/api/v1/referrals", data=_padded_json(REFERRAL, LIMIT + 1),
                           headers=_api_headers(seeded["community_worker"], language="en"))

    assert response.get_json()["error"]["message"] == f"Request body is too large; the limit is {LIMIT} bytes."


# --- the API, chunked --------------------------------------------------------------------------------


def test_api_chunked_oversized_is_413(live_server, seeded, runtime):
    before = _row_counts(runtime)

    reply = live_server.post_chunked("/api/v1/referrals", _padded_json(REFERRAL, 3 * LIMIT),
                                     _api_headers(seeded["community_worker"]))

    assert live_server.framing == [("chunked", None)], "the request went chunked, without Content-Length"
    assert reply.status == 413
    assert reply.content_type == "application/json"
    assert reply.json()["error"]["code"] == "too_large"
    assert _row_counts(runtime) == before


def test_api_chunked_one_byte_over_is_413(live_server, seeded, runtime):
    before = _row_counts(runtime)

    reply = live_server.post_chunked("/api/v1/referrals", _padded_json(REFERRAL, LIMIT + 1),
                                     _api_headers(seeded["community_worker"]))

    assert reply.status == 413
    assert reply.json()["error"]["code"] == "too_large"
    assert _row_counts(runtime) == before


def test_api_chunked_at_limit_accepted(live_server, seeded, runtime):
    reply = live_server.post_chunked("/api/v1/referrals", _padded_json(REFERRAL, LIMIT),
                                     _api_headers(seeded["community_worker"]))

    assert reply.status == 201, reply.text
    assert _row_counts(runtime)["Ticket"] == 1


def test_staff_api_chunked_oversized_is_413(live_server, client, seeded, runtime):
    number = client.post("/api/v1/referrals", json=REFERRAL,
                         headers=_api_headers(seeded["community_worker"])).get_json()["number"]
    before = _row_counts(runtime)

    reply = live_server.post_chunked(f"/api/v1/tickets/{number}/transitions",
                                     _padded_json({"to": "in_progress"}, 2 * LIMIT),
                                     _api_headers(seeded["operator"]))

    assert reply.status == 413
    assert reply.json()["error"]["code"] == "too_large"
    assert _row_counts(runtime) == before


# --- Open311 -------------------------------------------------------------------------------------------


def test_open311_oversized_with_length(client, seeded, runtime):
    before = _row_counts(runtime)

    response = client.post("/open311/v2/requests.json",
                           data=_padded_form({**OPEN311_REQUEST, "api_key": seeded["shequyun"]}, LIMIT + 1),
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 413
    assert response.mimetype == "application/json"
    [error] = response.get_json()
    assert error["code"] == 413
    assert str(LIMIT) in error["description"]
    assert _has_chinese(error["description"])
    assert _row_counts(runtime) == before


def test_open311_chunked_oversized_is_413(live_server, seeded, runtime):
    before = _row_counts(runtime)

    reply = live_server.post_chunked(
        "/open311/v2/requests.json", _padded_form({**OPEN311_REQUEST, "api_key": seeded["shequyun"]}, 3 * LIMIT),
        {"Content-Type": "application/x-www-form-urlencoded"})

    assert live_server.framing == [("chunked", None)]
    assert reply.status == 413
    assert reply.json()[0]["code"] == 413
    assert _row_counts(runtime) == before


def test_open311_chunked_at_limit_accepted(live_server, seeded, runtime):
    reply = live_server.post_chunked(
        "/open311/v2/requests.json", _padded_form({**OPEN311_REQUEST, "api_key": seeded["shequyun"]}, LIMIT),
        {"Content-Type": "application/x-www-form-urlencoded"})

    assert reply.status == 201, reply.text
    assert _row_counts(runtime)["Ticket"] == 1


# --- Twilio webhooks -----------------------------------------------------------------------------------


def test_twilio_oversized_with_length(client, seeded, runtime):
    form = {**TWILIO_CALL, "Padding": "x" * LIMIT}
    before = _row_counts(runtime)

    response = client.post("/twilio/voice", data=form, headers=_twilio_headers(form))

    assert response.status_code == 413
    assert response.mimetype == "text/xml"
    assert ElementTree.fromstring(response.data).tag == "Response"
    assert _row_counts(runtime) == before


def test_twilio_chunked_oversized_is_413(live_server, seeded, runtime):
    form = {**TWILIO_CALL, "Padding": "x" * (2 * LIMIT)}
    before = _row_counts(runtime)

    reply = live_server.post_chunked("/twilio/voice", urlencode(form).encode(), _twilio_headers(form))

    assert reply.status == 413
    assert reply.content_type.startswith("text/xml")
    assert ElementTree.fromstring(reply.text).tag == "Response"
    assert _row_counts(runtime) == before


def test_twilio_chunked_under_limit_answered(live_server, seeded, runtime):
    reply = live_server.post_chunked("/twilio/voice", urlencode(TWILIO_CALL).encode(), _twilio_headers(TWILIO_CALL))

    assert reply.status == 200, reply.text
    assert ElementTree.fromstring(reply.text).find("Gather") is not None
    assert _row_counts(runtime)["Call"] == 1


# --- the referral portal and the walk-in form -------------------------------------------------------


def test_portal_oversized_with_length(referrer, runtime):
    fields = {**_portal_fields(referrer), "note": "记" * LIMIT}
    fields["csrf_token"] = csrf_token(referrer, "/portal/referrals/new")
    before = _row_counts(runtime)

    response = referrer.post("/portal/referrals/new", data=fields)

    page = response.get_data(as_text=True)
    assert response.status_code == 413
    assert response.mimetype == "text/html"
    assert "提交的内容超过" in page
    assert _row_counts(runtime) == before


def test_portal_oversized_page_in_english(referrer):
    fields = {**_portal_fields(referrer), "note": "记" * LIMIT}
    fields["csrf_token"] = csrf_token(referrer, "/portal/referrals/new")

    response = referrer.post("/portal/referrals/new?lang=en", data=fields)

    assert response.status_code == 413
    assert "The form was larger than" in response.get_data(as_text=True)


def test_portal_chunked_oversized_is_413(live_server, referrer, runtime):
    headers, token = _session_headers(referrer, "/portal/referrals/new")
    fields = {**_portal_fields(referrer), "csrf_token": token}
    before = _row_counts(runtime)

    reply = live_server.post_chunked("/portal/referrals/new", _padded_form(fields, 2 * LIMIT), headers)

    assert reply.status == 413
    assert reply.content_type.startswith("text/html")
    assert "提交的内容超过" in reply.text
    assert _row_counts(runtime) == before


def test_portal_chunked_at_limit_filed(live_server, referrer, runtime):
    headers, token = _session_headers(referrer, "/portal/referrals/new")
    fields = {**_portal_fields(referrer), "csrf_token": token}

    reply = live_server.post_chunked("/portal/referrals/new", _padded_form(fields, LIMIT), headers)

    assert reply.status == 302, reply.text
    assert _row_counts(runtime)["Referral"] == 1


def test_walk_in_oversized_with_length(operator, runtime):
    fields = {"channel": "walk_in", "category": "consultation", "caller_phone": "13812345678",
              "note": "记" * LIMIT, "csrf_token": csrf_token(operator, "/tickets/new")}
    before = _row_counts(runtime)

    response = operator.post("/tickets/new", data=fields)

    assert response.status_code == 413
    assert "提交的内容超过" in response.get_data(as_text=True)
    assert _row_counts(runtime) == before


def test_walk_in_chunked_oversized_is_413(live_server, operator, runtime):
    headers, token = _session_headers(operator, "/tickets/new")
    fields = {"channel": "walk_in", "category": "consultation", "caller_phone": "13812345678", "csrf_token": token}
    before = _row_counts(runtime)

    reply = live_server.post_chunked("/tickets/new", _padded_form(fields, 2 * LIMIT), headers)

    assert reply.status == 413
    assert "提交的内容超过" in reply.text
    assert _row_counts(runtime) == before


def test_walk_in_chunked_at_limit_opened(live_server, operator, runtime):
    headers, token = _session_headers(operator, "/tickets/new")
    fields = {"channel": "walk_in", "category": "consultation", "caller_phone": "13812345678", "csrf_token": token}

    reply = live_server.post_chunked("/tickets/new", _padded_form(fields, LIMIT), headers)

    assert reply.status == 302, reply.text
    assert _row_counts(runtime)["Ticket"] == 1
