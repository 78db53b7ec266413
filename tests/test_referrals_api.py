"""POST /api/v1/referrals: tokens, validation, phone normalisation and idempotency."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import pytest
import time_machine
from sqlmodel import func, select

from hotline.models import Agency, OutboxMessage, Referral, SlaClock, Ticket, TicketEvent

REFERRAL = {
    "external_id": "SG-20261207-0001",
    "referrer": {"name": "陈伟", "phone": "138-6245-2821", "org": "盈浦街道西部花苑居委会"},
    "resident": {"name": "高勇", "phone": "+86 17767385051", "town": "盈浦街道", "committee": "西部花苑居委会",
                 "address": "盈浦街道95弄23号"},
    "category": "consultation",
    "needs": [],
    "flags": ["low_income"],
    "note": "询问骨灰寄存期限和费用。",
}


# One field with two numbers, as referrers type them: joined by a slash, a full-width comma, a semicolon, 、,
# 或, a space, and an extension number followed by a mobile.
TWO_NUMBERS = [
    "13812345678 / 021-59201234",
    "13812345678，13987654321",
    "13812345678;13987654321",
    "13812345678、13987654321",
    "13812345678 或 13987654321",
    "13812345678 13987654321",
    "021-59201234转8001 / 13812345678",
]


def _post(client, token, body, language="zh-CN"):
    return client.post("/api/v1/referrals", json=body,
                       headers={"Authorization": f"Bearer {token}", "Accept-Language": language})


def _row_counts(runtime):
    with runtime.transaction() as session:
        return {model.__name__: session.exec(select(func.count()).select_from(model)).one()
                for model in (Ticket, Referral, TicketEvent, SlaClock, OutboxMessage)}


def _with(**changes):
    body = {key: (dict(value) if isinstance(value, dict) else value) for key, value in REFERRAL.items()}
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return body


def test_referral_created_with_source_from_token(client, seeded):
    response = _post(client, seeded["community_worker"], REFERRAL)

    assert response.status_code == 201
    ticket = response.get_json()
    assert ticket["source"] == "community_worker"
    assert ticket["number"].startswith("QP-")
    assert ticket["external_id"] == "SG-20261207-0001"
    assert ticket["town"] == "盈浦街道"
    assert ticket["caller_phone"] == "177****5051"
    assert ticket["created_at"].endswith("+08:00")
    assert {clock["target"] for clock in ticket["sla"]} == {"first_response", "resolution"}


def test_created_location_readable_by_source(client, seeded):
    created = _post(client, seeded["community_worker"], REFERRAL)

    location = created.headers["Location"]
    read = client.get(location, headers={"Authorization": f"Bearer {seeded['community_worker']}"})

    assert location.endswith("/api/v1/referrals/SG-20261207-0001")
    assert read.status_code == 200
    assert read.get_json()["number"] == created.get_json()["number"]


@pytest.mark.parametrize("external_id, encoded", [
    ("2026/12/0001", "2026%2F12%2F0001"),
    ("../x", "..%2Fx"),
    ("a//b", "a%2F%2Fb"),
    ("编号 1?#", "%E7%BC%96%E5%8F%B7%201%3F%23"),
])
def test_location_of_any_external_id(client, seeded, external_id, encoded):
    headers = {"Authorization": f"Bearer {seeded['community_worker']}"}
    created = _post(client, seeded["community_worker"], _with(external_id=external_id))

    location = created.headers["Location"]
    by_location = client.get(location, headers=headers)
    with_slash = client.get(f"/api/v1/referrals/{external_id}", headers=headers)

    assert location == f"/api/v1/referrals/{encoded}"
    assert by_location.status_code == 200
    assert by_location.get_json()["number"] == created.get_json()["number"]
    if "?" not in external_id:
        assert with_slash.status_code == 200


@pytest.mark.parametrize("external_id", ["/x", ".", ".."])
def test_external_id_not_a_path_step(client, seeded, runtime, external_id):
    response = _post(client, seeded["community_worker"], _with(external_id=external_id))

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "external_id"
    assert _row_counts(runtime)["Ticket"] == 0


def test_resend_location_after_merge(client, seeded):
    survivor = _post(client, seeded["community_worker"], REFERRAL)
    merged = _post(client, seeded["elderly_advisor"], _with(external_id="EA-0009"))
    client.post(f"/api/v1/tickets/{survivor.get_json()['number']}/merge",
                json={"from": merged.get_json()["number"], "reason": "同一家属"},
                headers={"Authorization": f"Bearer {seeded['supervisor']}"})

    resent = _post(client, seeded["elderly_advisor"], _with(external_id="EA-0009"))

    assert resent.status_code == 200
    assert resent.get_json()["number"] == survivor.get_json()["number"]
    assert resent.headers["Location"] == "/api/v1/referrals/EA-0009"


def test_referral_resent_returns_same_ticket(client, seeded, runtime):
    first = _post(client, seeded["community_worker"], REFERRAL)
    second = _post(client, seeded["community_worker"], REFERRAL)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.get_json()["number"] == first.get_json()["number"]
    assert _row_counts(runtime)["Ticket"] == 1


def test_identical_resend_records_nothing(client, seeded, runtime):
    _post(client, seeded["community_worker"], REFERRAL)
    before = _row_counts(runtime)

    _post(client, seeded["community_worker"], REFERRAL)

    assert _row_counts(runtime) == before


def test_changed_resend_recorded_once(client, seeded, runtime):
    first = _post(client, seeded["community_worker"], REFERRAL)
    changed = _with(resident__phone="13912345678", note="改为上午来电。")

    second = _post(client, seeded["community_worker"], changed)
    _post(client, seeded["community_worker"], changed)

    assert second.status_code == 200
    assert second.get_json()["number"] == first.get_json()["number"]
    assert second.get_json()["caller_phone"] == "177****5051", "the ticket keeps the first content"
    resent = [event for event in second.get_json()["events"] if event["kind"] == "referral_resent"]
    assert len(resent) == 1
    assert resent[0]["data"]["changed"] == ["note", "resident.phone"]
    assert resent[0]["data"]["payload"]["resident"]["phone"] == "13912345678"
    assert _row_counts(runtime)["TicketEvent"] == 4, "created, two clocks started, one resend"


@pytest.mark.parametrize("same_content", [
    _with(resident__phone="177-6738-5051"),
    _with(resident__phone="１７７６７３８５０５１"),
    _with(resident__town="310118002"),
    {**_with(), "needs": [], "flags": ["low_income"], "deceased": None},
])
def test_resend_written_differently_records_nothing(client, seeded, runtime, same_content):
    _post(client, seeded["community_worker"], REFERRAL)
    before = _row_counts(runtime)

    response = _post(client, seeded["community_worker"], same_content)

    assert response.status_code == 200
    assert _row_counts(runtime) == before


def test_resend_change_ignores_formatting(client, seeded, runtime):
    _post(client, seeded["community_worker"], REFERRAL)

    first = _post(client, seeded["community_worker"], _with(note="改为上午来电。", resident__phone="177 6738 5051"))
    second = _post(client, seeded["community_worker"], _with(note="改为上午来电。"))

    resent = [event for event in second.get_json()["events"] if event["kind"] == "referral_resent"]
    assert first.status_code == 200
    assert len(resent) == 1
    assert resent[0]["data"]["changed"] == ["note"]


def test_resend_compared_as_sent_when_first_invalid(client, seeded, runtime):
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.kind == "agency").order_by(Agency.id)).first()
        name = agency.name
    _post(client, seeded["community_worker"], {**REFERRAL, "chosen_agency": name})
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == name)).one()
        agency.status = "suspended"
        session.add(agency)

    response = _post(client, seeded["community_worker"], _with(note="改为上午来电。"))

    resent = [event for event in response.get_json()["events"] if event["kind"] == "referral_resent"]
    assert response.status_code == 200
    assert len(resent) == 1
    assert resent[0]["data"]["changed"] == ["chosen_agency", "note"]


def test_same_external_id_other_source_is_new(client, seeded, runtime):
    _post(client, seeded["community_worker"], REFERRAL)
    response = _post(client, seeded["shequyun"], REFERRAL)

    assert response.status_code == 201
    assert response.get_json()["channel"] == "shequyun"
    assert _row_counts(runtime)["Ticket"] == 2


def test_concurrent_duplicates_make_one_ticket(app, seeded, runtime):
    results = []

    def send():
        with app.test_client() as own_client:
            response = _post(own_client, seeded["elderly_advisor"], REFERRAL)
            results.append((response.status_code, response.get_json()["number"]))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in results) == [200, 200, 200, 201]
    assert len({number for _, number in results}) == 1
    assert _row_counts(runtime)["Ticket"] == 1
    assert _row_counts(runtime)["Referral"] == 1


def test_concurrent_changed_resends_recorded_once(app, seeded, runtime):
    _post(app.test_client(), seeded["elderly_advisor"], REFERRAL)
    statuses = []
    for round_number in range(3):
        changed = _with(note=f"第{round_number}次更正。")
        barrier = threading.Barrier(8)

        def send(body=changed, barrier=barrier):
            with app.test_client() as own_client:
                barrier.wait()
                statuses.append(_post(own_client, seeded["elderly_advisor"], body).status_code)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    with runtime.transaction() as session:
        resent = session.exec(select(TicketEvent).where(TicketEvent.kind == "referral_resent")).all()
    assert statuses == [200] * 24
    assert sorted(event.data["payload"]["note"] for event in resent) == ["第0次更正。", "第1次更正。", "第2次更正。"]


@pytest.mark.parametrize("typed, expected", [
    ("１７７６７３８５０５１", "+8617767385051"),
    ("59201252", "+862159201252"),
    ("(021)59209729", "+862159209729"),
    ("021-59200496转8001", "+862159200496"),
    ("177 5878 0368", "+8617758780368"),
    ("021 5920 1252", "+862159201252"),
    ("+86 21 59201252", "+862159201252"),
    ("0086 177 5878 0368", "+8617758780368"),
])
def test_phone_typed_forms_normalised(client, seeded, runtime, typed, expected):
    _post(client, seeded["community_worker"], _with(resident__phone=typed))

    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket)).one()
    assert ticket.caller_phone == expected


@pytest.mark.parametrize("typed", ["021-59200496 分机 8001", "021-59200496转8001", "021-59200496 ext. 8001",
                                   "021-59200496 x8001"])
def test_phone_extension_kept_apart(client, seeded, runtime, typed):
    response = _post(client, seeded["community_worker"], _with(resident__phone=typed))

    assert response.status_code == 201, response.get_json()
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket)).one()
    assert ticket.caller_phone == "+862159200496"
    assert ticket.caller_phone_ext == "8001"


@pytest.mark.parametrize("person", ["resident", "referrer"])
@pytest.mark.parametrize("typed", TWO_NUMBERS)
def test_two_phone_numbers_rejected(client, seeded, runtime, person, typed):
    before = _row_counts(runtime)

    response = _post(client, seeded["community_worker"], _with(**{f"{person}__phone": typed}))

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "multiple_phones"
    assert error["field"] == f"{person}.phone"
    assert f"字段 {person}.phone 填写了不止一个电话号码：{typed}" in error["message"]
    assert "其他号码请写在 note 中" in error["message"]
    assert _row_counts(runtime) == before


@pytest.mark.parametrize("typed", ["13812345678, 13812345678", "13812345678 13812345678",
                                   "13812345678、138-1234-5678", "13812345678 / +86 138 1234 5678"])
def test_same_number_twice_accepted(client, seeded, runtime, typed):
    response = _post(client, seeded["community_worker"], _with(resident__phone=typed))

    assert response.status_code == 201, response.get_json()
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket)).one()
    assert ticket.caller_phone == "+8613812345678"


def test_number_with_words_still_invalid(client, seeded):
    response = _post(client, seeded["community_worker"], _with(resident__phone="13812345678 找张阿姨"))

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_phone"


def _post_bytes(client, token, data: bytes, content_type="application/json", language="en"):
    return client.post("/api/v1/referrals", data=data, content_type=content_type,
                       headers={"Authorization": f"Bearer {token}", "Accept-Language": language})


def test_invalid_utf8_body_rejected(client, seeded, runtime):
    data = json.dumps(_with(note="PLACEHOLDER"), ensure_ascii=False).encode().replace(b"PLACEHOLDER", b"caf\xe9 \xff")

    response = _post_bytes(client, seeded["community_worker"], data)

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_json"
    assert "UTF-8" in error["message"]
    assert _row_counts(runtime)["Ticket"] == 0


def test_gbk_charset_rejected(client, seeded, runtime):
    data = json.dumps(REFERRAL, ensure_ascii=False).encode("gbk")

    response = _post_bytes(client, seeded["community_worker"], data, content_type="application/json; charset=gbk")

    assert response.status_code == 415
    assert "gbk" in response.get_json()["error"]["message"]
    assert _row_counts(runtime)["Ticket"] == 0


def test_byte_order_mark_ignored(client, seeded, runtime):
    data = "\ufeff".encode() + json.dumps(REFERRAL, ensure_ascii=False).encode()

    response = _post_bytes(client, seeded["community_worker"], data,
                           content_type="application/json; charset=utf-8")

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["note"] == REFERRAL["note"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_constant_rejected(client, seeded, runtime, constant):
    data = json.dumps(REFERRAL, ensure_ascii=False).replace('"consultation"', '"consultation", "x": ' + constant)

    response = _post_bytes(client, seeded["community_worker"], data.encode())

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_json"
    assert constant in error["message"]
    assert _row_counts(runtime)["Ticket"] == 0


def test_json_error_message_without_parser_text(client, seeded):
    data = b'{"external_id": "A", "note": "line\nbreak"}'

    response = _post_bytes(client, seeded["community_worker"], data, language="zh-CN")

    message = response.get_json()["error"]["message"]
    assert response.status_code == 400
    assert "Invalid" not in message
    assert "第 1 行" in message


def test_note_keeps_line_breaks_and_tabs(client, seeded):
    response = _post(client, seeded["community_worker"], _with(note="询问骨灰寄存：\n\t期限\r\n\t费用"))

    assert response.status_code == 201
    assert response.get_json()["note"] == "询问骨灰寄存：\n\t期限\r\n\t费用"


def test_control_character_message_names_it(client, seeded):
    response = _post(client, seeded["community_worker"], _with(resident__name="高\u0007勇"), language="en")

    assert response.get_json()["error"]["message"] == (
        "Field resident.name contains the control character U+0007, which is not accepted; remove it and send "
        "the request again.")


def test_two_phone_numbers_message_in_english(client, seeded):
    response = _post(client, seeded["community_worker"], _with(resident__phone="13812345678 / 021-59201234"),
                     language="en")

    assert response.get_json()["error"]["message"] == (
        "Field resident.phone contains more than one phone number: 13812345678 / 021-59201234. It takes one "
        "number; put any other number in note.")


@pytest.mark.parametrize("changes, status, code, field", [
    ({"resident__phone": "12345"}, 422, "invalid_phone", "resident.phone"),
    ({"resident__phone": "1381234567"}, 422, "invalid_phone", "resident.phone"),
    ({"referrer__phone": "not a number"}, 422, "invalid_phone", "referrer.phone"),
    ({"resident__town": "浦东新区"}, 422, "invalid_value", "resident.town"),
    ({"category": "wedding"}, 422, "invalid_value", "category"),
    ({"needs": ["fireworks"]}, 422, "invalid_value", "needs"),
    ({"flags": ["vip"]}, 422, "invalid_value", "flags"),
    ({"needs": "body_transport"}, 422, "invalid_type", "needs"),
    ({"external_id": ""}, 422, "required", "external_id"),
    ({"source": "shequyun"}, 422, "unknown_field", "source"),
    ({"resident__town": None}, 422, "required", "resident.town"),
    ({"note": "长" * 2001}, 422, "too_long", "note"),
    ({"deceased": {"died_at": "2026-12-07 08:00"}}, 422, "invalid_type", "deceased.died_at"),
    ({"deceased": {"place": "路边"}}, 422, "invalid_value", "deceased.place"),
    ({"resident__name": "高\u0007勇"}, 422, "invalid_character", "resident.name"),
    ({"resident__address": "盈浦街道\n95弄23号"}, 422, "invalid_character", "resident.address"),
    ({"referrer__org": "\u202e会委居"}, 422, "invalid_character", "referrer.org"),
    ({"note": "询问\u001b[31m费用"}, 422, "invalid_character", "note"),
    ({"external_id": "SG\u007f1"}, 422, "invalid_character", "external_id"),
])
def test_bad_referral_rejected_without_rows(client, seeded, runtime, changes, status, code, field):
    before = _row_counts(runtime)

    response = _post(client, seeded["community_worker"], _with(**changes))

    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    assert _row_counts(runtime) == before


def test_unknown_town_lists_accepted_towns(client, seeded):
    response = _post(client, seeded["community_worker"], _with(resident__town="浦东新区"))

    message = response.get_json()["error"]["message"]
    assert "浦东新区" in message
    assert "练塘镇" in message


RECEIVED_AT = datetime.fromisoformat("2026-12-04T12:00:00+08:00")


@pytest.mark.parametrize("died_at, stored", [
    ("2026-12-04T11:59:59+08:00", "2026-12-04T11:59:59+08:00"),
    ("2026-12-04T12:10:00+08:00", "2026-12-04T12:10:00+08:00"),
    ("2026-12-04T04:10:00Z", "2026-12-04T12:10:00+08:00"),
    ("2026-12-04 03:00:00.5-01:00", "2026-12-04T12:00:00.500000+08:00"),
    ("1950-01-01T00:00:00+08:00", "1950-01-01T00:00:00+08:00"),
    ("2026-12-04t04:00:00z", "2026-12-04T12:00:00+08:00"),
])
def test_died_at_stored_in_shanghai_time(client, seeded, died_at, stored):
    with time_machine.travel(RECEIVED_AT, tick=False):
        response = _post(client, seeded["community_worker"], _with(deceased={"died_at": died_at, "place": "home"}))

    assert response.status_code == 201
    assert response.get_json()["deceased"]["died_at"] == stored


# The message shows the time in Asia/Shanghai, or as sent when it has no such form.
@pytest.mark.parametrize("died_at, code, shown, wording", [
    ("2026-12-04T12:10:01+08:00", "time_in_future", "2026-12-04T12:10:01+08:00", "晚于转介送达时间超过 10 分钟"),
    ("2026-12-04T04:10:01Z", "time_in_future", "2026-12-04T12:10:01+08:00", "晚于转介送达时间超过 10 分钟"),
    ("2027-12-04T12:00:00+08:00", "time_in_future", "2027-12-04T12:00:00+08:00", "晚于转介送达时间超过 10 分钟"),
    ("9999-12-31T23:59:59-12:00", "time_in_future", "9999-12-31T23:59:59-12:00", "晚于转介送达时间超过 10 分钟"),
    ("0001-01-01T00:00:00+08:00", "invalid_date", "0001-01-01T00:00:00+08:00", "早于 1950 年"),
    ("1949-12-31T23:59:59+08:00", "invalid_date", "1949-12-31T23:59:59+08:00", "早于 1950 年"),
])
def test_impossible_died_at_rejected(client, seeded, runtime, died_at, code, shown, wording):
    before = _row_counts(runtime)

    with time_machine.travel(RECEIVED_AT, tick=False):
        response = _post(client, seeded["community_worker"], _with(deceased={"died_at": died_at}))

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["field"] == "deceased.died_at"
    assert shown in error["message"]
    assert wording in error["message"]
    assert _row_counts(runtime) == before


@pytest.mark.parametrize("died_at, status", [
    ("1950-01-01T00:00:00+09:00", 422),
    ("1949-12-31T20:00:00-05:00", 201),
])
def test_earliest_died_at_judged_in_shanghai(client, seeded, died_at, status):
    with time_machine.travel(RECEIVED_AT, tick=False):
        response = _post(client, seeded["community_worker"], _with(deceased={"died_at": died_at}))

    assert response.status_code == status


LATER_YEAR = datetime.fromisoformat("2027-12-05T12:00:00+08:00")


def test_retry_of_referral_accepted_before_death_check(client, seeded):
    body = _with(deceased={"died_at": "2027-12-04T08:00:00+08:00"})
    # Filed when the time of death lay in the past, as referrals accepted before intake checked it.
    with time_machine.travel(LATER_YEAR, tick=False):
        first = _post(client, seeded["community_worker"], body)

    with time_machine.travel(RECEIVED_AT, tick=False):
        retry = _post(client, seeded["community_worker"], body)

    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.get_json()["number"] == first.get_json()["number"]


def test_corrected_died_at_reported_alone(client, seeded):
    with time_machine.travel(LATER_YEAR, tick=False):
        _post(client, seeded["community_worker"], _with(deceased={"died_at": "2027-12-04T08:00:00+08:00"},
                                                        resident__phone="+86 17767385051"))

    with time_machine.travel(RECEIVED_AT, tick=False):
        corrected = _post(client, seeded["community_worker"], _with(deceased={"died_at": "2026-12-04T08:00:00+08:00"},
                                                                    resident__phone="177-6738-5051"))

    resent = [event for event in corrected.get_json()["events"] if event["kind"] == "referral_resent"]
    assert corrected.status_code == 200
    assert len(resent) == 1
    assert resent[0]["data"]["changed"] == ["deceased.died_at"]


def test_future_died_at_message_in_english(client, seeded):
    with time_machine.travel(RECEIVED_AT, tick=False):
        response = _post(client, seeded["community_worker"], _with(deceased={"died_at": "2026-12-05T08:00:00+08:00"}),
                         language="en")

    assert response.get_json()["error"]["message"] == (
        "Field deceased.died_at is 2026-12-05T08:00:00+08:00, more than 10 minutes after the referral arrived; "
        "send the time the death occurred.")


def test_error_message_in_callers_language(client, seeded):
    chinese = _post(client, seeded["community_worker"], _with(category="wedding"), language="zh-CN")
    english = _post(client, seeded["community_worker"], _with(category="wedding"), language="en-US")

    chinese_message = chinese.get_json()["error"]["message"]
    assert any("\u4e00" <= character <= "\u9fff" for character in chinese_message), chinese_message
    assert "wedding" in chinese_message
    assert english.get_json()["error"]["message"].startswith("Unknown value")


@pytest.mark.parametrize("header, challenge", [
    (None, 'Bearer realm="hotline"'),
    ("Bearer nope", 'Bearer realm="hotline", error="invalid_token"'),
    ("Basic abc", 'Bearer realm="hotline"'),
    ("Bearer ", 'Bearer realm="hotline"'),
])
def test_bad_token_rejected(client, seeded, runtime, header, challenge):
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/v1/referrals", json=REFERRAL, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == challenge
    assert _row_counts(runtime)["Ticket"] == 0


def test_staff_token_cannot_refer(client, seeded, runtime):
    response = _post(client, seeded["operator"], REFERRAL)

    assert response.status_code == 403
    assert _row_counts(runtime)["Ticket"] == 0


def test_malformed_json_rejected(client, seeded, runtime):
    response = client.post("/api/v1/referrals", data="{not json", content_type="application/json",
                           headers={"Authorization": f"Bearer {seeded['community_worker']}"})

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert _row_counts(runtime)["Ticket"] == 0


@pytest.mark.parametrize("original, repeated, field", [
    ('"external_id": "SG-20261207-0001"', '"external_id": "SG-20261207-0002"', "external_id"),
    ('"phone": "+86 17767385051"', '"phone": "13987654321"', "phone"),
])
def test_duplicate_json_key_rejected(client, seeded, runtime, original, repeated, field):
    body = json.dumps(REFERRAL, ensure_ascii=False).replace(original, f"{original}, {repeated}")

    response = client.post("/api/v1/referrals", data=body.encode(), content_type="application/json",
                           headers={"Authorization": f"Bearer {seeded['community_worker']}"})

    error = response.get_json()["error"]
    assert body.count(repeated) == 1
    assert response.status_code == 400
    assert error["code"] == "invalid_json"
    assert error["field"] == field
    assert _row_counts(runtime)["Ticket"] == 0


def test_wrong_method_names_allowed_ones(client, seeded):
    response = client.put("/api/v1/referrals", headers={"Authorization": f"Bearer {seeded['community_worker']}",
                                                         "Accept-Language": "en"})

    assert response.status_code == 405
    assert "POST" in response.headers["Allow"].split(", ")
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert response.get_json()["error"]["message"].startswith("Method PUT is not allowed on this URL; use ")
    assert "OPTIONS" in response.headers["Allow"]
    assert "OPTIONS" not in response.get_json()["error"]["message"]
    assert "HEAD" not in response.get_json()["error"]["message"]


def test_json_array_body_rejected(client, seeded, runtime):
    response = _post(client, seeded["community_worker"], [REFERRAL])

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_body"


def test_oversized_body_rejected(client, seeded, runtime):
    response = _post(client, seeded["community_worker"], _with(note="长" * 40000))

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    assert _row_counts(runtime)["Ticket"] == 0


def test_deeply_nested_json_rejected(client, seeded, runtime):
    body = '{"external_id": ' + "[" * 5000 + "]" * 5000 + "}"

    response = client.post("/api/v1/referrals", data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {seeded['community_worker']}"})

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert _row_counts(runtime)["Ticket"] == 0


def test_syntax_error_position_reported(client, seeded):
    response = client.post("/api/v1/referrals", data='{"external_id": "A",}', content_type="application/json",
                           headers={"Authorization": f"Bearer {seeded['community_worker']}", "Accept-Language": "en"})

    assert response.status_code == 400
    assert "line 1, column" in response.get_json()["error"]["message"]


def test_plain_text_body_rejected(client, seeded):
    response = client.post("/api/v1/referrals", data='{"external_id": "A"}', content_type="text/plain",
                           headers={"Authorization": f"Bearer {seeded['community_worker']}"})

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize("changes, field", [
    ({"external_id": 5}, "external_id"),
    ({"resident": "x"}, "resident"),
    ({"needs": False}, "needs"),
    ({"flags": {}}, "flags"),
    ({"deceased": {"died_at": "yesterday"}}, "deceased.died_at"),
])
def test_wrong_type_message_all_chinese(client, seeded, changes, field):
    response = _post(client, seeded["community_worker"], _with(**changes))

    error = response.get_json()["error"]
    assert response.status_code == 422
    assert error["field"] == field
    words = error["message"].replace(field, "").replace("ISO", "").replace("JSON", "").replace("08:00:00", "")
    words = words.replace("2026-12-07T", "")
    assert not any(character.isascii() and character.isalpha() for character in words), error["message"]
