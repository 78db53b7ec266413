"""Requests carrying rejected characters: an error naming the field, in the caller's format, nothing written.

PostgreSQL's text and jsonb types cannot hold U+0000, and neither database stores an unpaired surrogate,
so without the guard these requests failed with 500; they get 400. Other control characters get 422,
except tabs and line breaks. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import func, select
from web_helpers import log_in

from hotline import text_guard
from hotline.models import Call, Referral, Ticket, TicketEvent
from hotline.telephony.signatures import compute_signature

PUBLIC = "https://hotline.example.test"
REFERRAL = {
    "external_id": "SG-20261207-0001",
    "resident": {"name": "高勇", "phone": "13812345678", "town": "盈浦街道"},
    "category": "consultation",
}


def _count(runtime, model) -> int:
    with runtime.transaction() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def _post_referral(client, token: str, text: str, language: str = "en"):
    return client.post("/api/v1/referrals", data=text.encode(),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                "Accept-Language": language})


def test_referral_note_with_nul_rejected(client, seeded, runtime):
    body = '{"external_id": "SG-1", "category": "consultation", "note": "a\\u0000b", ' \
           '"resident": {"phone": "13812345678", "town": "盈浦街道"}}'

    response = _post_referral(client, seeded["shequyun"], body)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_character"
    assert error["field"] == "note"
    assert "U+0000" in error["message"]
    assert _count(runtime, Ticket) == 0
    assert _count(runtime, Referral) == 0


def test_nested_field_named_in_chinese(client, seeded, runtime):
    body = '{"external_id": "SG-1", "category": "consultation", ' \
           '"resident": {"phone": "13812345678", "town": "盈浦街道", "name": "高\\u0000勇"}}'

    response = _post_referral(client, seeded["shequyun"], body, language="zh-CN")

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "resident.name"
    assert "resident.name" in error["message"]
    assert "NUL" in error["message"]
    assert "请删除" in error["message"]


def test_escaped_backslash_before_u0000_accepted(client, seeded, runtime):
    body = '{"external_id": "SG-1", "category": "consultation", "note": "路径 C:\\\\u0000 不是空字符", ' \
           '"resident": {"phone": "13812345678", "town": "盈浦街道"}}'

    response = _post_referral(client, seeded["shequyun"], body)

    assert response.status_code == 201
    assert response.get_json()["note"] == "路径 C:\\u0000 不是空字符"


def test_query_parameter_with_nul_rejected(client, seeded):
    response = client.get("/api/v1/tickets?status=open%00", headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "status"


def test_open311_query_with_nul_in_georeport_format(client, seeded):
    response = client.get(f"/open311/v2/requests.json?api_key={seeded['shequyun']}&service_request_id=QP%00")

    assert response.status_code == 400
    errors = response.get_json()
    assert errors[0]["code"] == 400
    assert "service_request_id" in errors[0]["description"]


@pytest.mark.parametrize("character", ["\x00", "\x07"])
def test_twilio_form_with_rejected_character_stores_no_call(client, seeded, runtime, character):
    form = {"AccountSid": "AC55555555555555555555555555555555", "CallSid": f"CA{character}0001",
            "CallStatus": "ringing", "From": "+8613812345678", "To": "+862159200496"}
    signature = compute_signature("test-auth-token", PUBLIC + "/twilio/voice", form)

    response = client.post("/twilio/voice", data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 400
    assert response.mimetype == "text/xml"
    assert b"<Response" in response.data
    assert _count(runtime, Call) == 0
    assert _count(runtime, Ticket) == 0


def test_path_with_nul_rejected(client, seeded):
    response = client.get("/api/v1/tickets/QP-20261207-%000001",
                          headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "path"


@pytest.mark.parametrize(("body", "field"), [
    ('{"external_id": "S1", "category": "consultation", "note": "\\ud800", '
     '"resident": {"phone": "13812345678", "town": "盈浦街道"}}', "note"),
    ('{"external_id": "S1", "category": "consultation", '
     '"resident": {"phone": "\\udc00", "town": "盈浦街道"}}', "resident.phone"),
    ('{"external_id": "S1", "category": "consultation", "\\ud800": 1, '
     '"resident": {"phone": "13812345678", "town": "盈浦街道"}}', "\\ud800"),
])
def test_unpaired_surrogate_rejected(client, seeded, runtime, body, field):
    response = _post_referral(client, seeded["shequyun"], body)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_character"
    assert error["field"] == field
    assert "surrogate" in error["message"]
    assert _count(runtime, Ticket) == 0


def test_surrogate_pair_accepted(client, seeded):
    body = '{"external_id": "S1", "category": "consultation", "note": "\\ud83d\\ude4f", ' \
           '"resident": {"phone": "13812345678", "town": "盈浦街道"}}'

    response = _post_referral(client, seeded["shequyun"], body)

    assert response.status_code == 201
    assert response.get_json()["note"] == "\U0001F64F"


def test_staff_page_gets_html_400(client, seeded):
    log_in(client, "operator", "test-password")

    response = client.get("/?status=%00")

    assert response.status_code == 400
    assert response.mimetype == "text/html"


def test_long_unknown_field_name_cut(client, seeded):
    body = json.dumps({"external_id": "S1", "category": "consultation", "x" * 30000: 1,
                       "resident": {"phone": "13812345678", "town": "盈浦街道"}})

    response = _post_referral(client, seeded["shequyun"], body)

    assert response.status_code == 422
    assert len(response.get_json()["error"]["field"]) <= 70
    assert len(response.data) < 2000


def test_deep_field_path_cut(client, seeded):
    body = {"external_id": "S1", "category": "consultation", "resident": {"phone": "13812345678", "town": "盈浦街道"}}
    nested = "a\x00b"
    for _ in range(300):
        nested = {"level": nested}
    body["note"] = nested

    response = _post_referral(client, seeded["shequyun"], json.dumps(body))

    assert response.status_code == 400
    assert len(response.get_json()["error"]["field"]) <= 201


def _ticket(client, token: str) -> str:
    response = _post_referral(client, token, json.dumps(REFERRAL))
    assert response.status_code == 201
    return response.get_json()["number"]


def _transition(client, token: str, number: str, text: str):
    return client.post(f"/api/v1/tickets/{number}/transitions", data=text.encode(),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                "Accept-Language": "zh-CN"})


@pytest.mark.parametrize(("reason", "character"), [
    ("\\u0007响铃", "U+0007"),
    ("\\b退格", "U+0008"),
    ("\u202e反向", "U+202E"),
    ("\\u2066隔离", "U+2066"),
    ("\x7f删除", "U+007F"),
])
def test_control_character_in_transition_reason_rejected(client, seeded, runtime, reason, character):
    number = _ticket(client, seeded["shequyun"])
    events_before = _count(runtime, TicketEvent)

    response = _transition(client, seeded["operator"], number, f'{{"to": "waiting", "reason": "{reason}"}}')

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_character"
    assert error["field"] == "reason"
    assert character in error["message"]
    assert "控制字符" in error["message"]
    assert _count(runtime, TicketEvent) == events_before
    with runtime.transaction() as session:
        assert session.exec(select(Ticket.status)).one() == "new"


def test_tab_and_line_breaks_accepted(client, seeded):
    number = _ticket(client, seeded["shequyun"])

    response = _transition(client, seeded["operator"], number,
                           '{"to": "waiting", "reason": "等待家属\\t回电\\r\\n明天上午"}')

    assert response.status_code == 200


def test_query_parameter_with_control_character_rejected(client, seeded):
    response = client.get("/api/v1/tickets?status=open%07", headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_character"
    assert response.get_json()["error"]["field"] == "status"


def test_control_character_in_field_name_escaped(client, seeded, runtime):
    body = '{"external_id": "S1", "category": "consultation", "a\\u001bb": 1, ' \
           '"resident": {"phone": "13812345678", "town": "盈浦街道"}}'

    response = _post_referral(client, seeded["shequyun"], body)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "a\\u001bb"
    assert _count(runtime, Ticket) == 0


def _open311_form(token: str, description: bytes) -> bytes:
    fields = {"service_code": "consultation", "phone": "13912345678", "api_key": token,
              "attribute[external_id]": "OPEN311-1", "attribute[town]": "盈浦街道"}
    return urlencode(fields).encode() + b"&description=" + description


def test_open311_form_not_utf8_rejected(client, seeded, runtime):
    body = _open311_form(seeded["shequyun"], b"%C0%FF%E4")

    response = client.post("/open311/v2/requests.json", data=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "en"})

    assert response.status_code == 400
    errors = response.get_json()
    assert errors[0]["code"] == 400
    assert "description" in errors[0]["description"]
    assert "UTF-8" in errors[0]["description"]
    assert _count(runtime, Ticket) == 0


def test_percent_sign_typed_in_form_accepted(client, seeded, runtime):
    body = _open311_form(seeded["shequyun"], b"%25FF+100%25")

    response = client.post("/open311/v2/requests.json", data=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 201
    with runtime.transaction() as session:
        assert session.exec(select(Ticket.note)).one() == "%FF 100%"


def test_query_not_utf8_rejected(client, seeded):
    response = client.get("/api/v1/tickets?status=%FF", headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_character"
    assert error["field"] == "status"


def test_staff_form_not_utf8_gets_html_400(client, seeded):
    log_in(client, "operator", "test-password")

    response = client.post("/tickets/new", data=b"caller_name=%FF",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "字段 caller_name 解码百分号转义后不是有效的 UTF-8 文本" in response.get_data(as_text=True)


def test_staff_form_with_control_character_names_it(client, seeded):
    log_in(client, "operator", "test-password")

    response = client.post("/tickets/new?lang=en", data={"caller_name": "高\u202e勇"})

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Field caller_name contains the control character U+202E" in response.get_data(as_text=True)


# Characters on both sides of each of the guard's rules, with backslashes, quotes and Chinese punctuation,
# whose UTF-8 starts with the same byte as the bidirectional controls.
GUARD_ALPHABET = ("\x00\x01\x08\x09\x0a\x0c\x1f\x20\x7e\x7f\x80\\\"u0a青浦，“”—"
                  "\u200e\u202a\u202e\u202f\u2066\u2069\u206a")


@settings(max_examples=400, deadline=None)
@given(texts=st.lists(st.text(alphabet=GUARD_ALPHABET, max_size=12), min_size=1, max_size=4),
       ascii_only=st.booleans())
def test_json_prefilter_misses_no_rejected_character(texts, ascii_only):
    body = {f"k{index}": text for index, text in enumerate(texts)}
    data = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")

    rejected = next(text_guard._unstorable_paths(body, ""), None)

    assert text_guard._in_json(data) == rejected
