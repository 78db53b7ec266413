"""SMS backends: the console logger, and Twilio's Messages API served by a real HTTP mock on 127.0.0.1."""

from __future__ import annotations

import logging
import re
import socket

import pytest
from twilio_mock import twilio_mock, twilio_settings  # noqa: F401 - pytest fixtures

from hotline.config import load_settings
from hotline.telephony.sms import ConsoleSms, SmsSendError, TwilioSms, make_sms_backend, mask_phone

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "test-auth-token"
FROM_NUMBER = "+862159200496"
FAMILY_MOBILE = "+8613812345678"
BODY = "【青浦区殡仪馆】您的工单 QP-20261207-0001 已受理，工作人员将尽快与您联系。"


def make_twilio_sms(base_url: str, timeout: float = 10.0) -> TwilioSms:
    return TwilioSms(ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, api_base_url=base_url, timeout=timeout)


def closed_port_url() -> str:
    """Return a loopback URL whose port was just free, so connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_twilio_send_returns_sid(twilio_mock):  # noqa: F811
    sid = make_twilio_sms(twilio_mock.base_url).send(FAMILY_MOBILE, BODY)

    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert len(twilio_mock.requests) == 1


def test_twilio_send_posts_message_fields(twilio_mock):  # noqa: F811
    make_twilio_sms(twilio_mock.base_url).send(FAMILY_MOBILE, BODY)

    request = twilio_mock.requests[0]
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.account_sid == ACCOUNT_SID
    assert request.form["To"] == FAMILY_MOBILE
    assert request.form["From"] == FROM_NUMBER
    assert request.form["Body"] == BODY
    assert request.basic_auth == (ACCOUNT_SID, AUTH_TOKEN)


def test_twilio_500_then_success(twilio_mock):  # noqa: F811
    twilio_mock.respond(500)
    twilio_mock.respond(201, {"sid": "SM11111111111111111111111111111111", "status": "queued"})
    sms = make_twilio_sms(twilio_mock.base_url)

    with pytest.raises(SmsSendError) as failure:
        sms.send(FAMILY_MOBILE, BODY)
    assert failure.value.retryable is True
    assert failure.value.status == 500
    assert len(twilio_mock.requests) == 1

    assert sms.send(FAMILY_MOBILE, BODY) == "SM11111111111111111111111111111111"
    assert len(twilio_mock.requests) == 2
    assert twilio_mock.requests[1].form["Body"] == BODY


def test_twilio_400_is_not_retryable(twilio_mock):  # noqa: F811
    twilio_mock.respond(400, {"code": 21211, "message": "The 'To' number is not a valid phone number.",
                              "status": 400})

    with pytest.raises(SmsSendError) as failure:
        make_twilio_sms(twilio_mock.base_url).send(FAMILY_MOBILE, BODY)

    assert failure.value.retryable is False
    assert failure.value.status == 400
    assert "21211" in str(failure.value)
    assert len(twilio_mock.requests) == 1


def test_twilio_429_is_retryable(twilio_mock):  # noqa: F811
    twilio_mock.respond(429, {"code": 20429, "message": "Too Many Requests", "status": 429})

    with pytest.raises(SmsSendError) as failure:
        make_twilio_sms(twilio_mock.base_url).send(FAMILY_MOBILE, BODY)

    assert failure.value.retryable is True
    assert failure.value.status == 429


def test_twilio_error_hides_full_number(twilio_mock):  # noqa: F811
    twilio_mock.respond(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400})

    with pytest.raises(SmsSendError) as failure:
        make_twilio_sms(twilio_mock.base_url).send(FAMILY_MOBILE, BODY)

    assert "13812345678" not in str(failure.value)
    assert "138****5678" in str(failure.value)


def test_twilio_connection_refused_is_retryable():
    with pytest.raises(SmsSendError) as failure:
        make_twilio_sms(closed_port_url()).send(FAMILY_MOBILE, BODY)

    assert failure.value.retryable is True
    assert failure.value.status is None


def test_twilio_timeout_is_retryable(twilio_mock):  # noqa: F811
    twilio_mock.respond(201, delay_seconds=1.0)

    with pytest.raises(SmsSendError) as failure:
        make_twilio_sms(twilio_mock.base_url, timeout=0.2).send(FAMILY_MOBILE, BODY)

    assert failure.value.retryable is True
    assert "timed out" in str(failure.value)


def test_twilio_default_timeout_is_ten_seconds():
    sms = TwilioSms(ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER)

    assert sms.client.http_client.timeout == 10.0
    assert sms.client.api.base_url == "https://api.twilio.com"


def test_console_send_logs_masked_number(caplog):
    caplog.set_level(logging.INFO, logger="hotline.sms")

    message_id = ConsoleSms().send(FAMILY_MOBILE, BODY)

    assert re.fullmatch(r"console-[0-9a-f-]{36}", message_id)
    assert [record.getMessage() for record in caplog.records] == [f"SMS to 138****5678: {BODY}"]
    assert caplog.records[0].levelno == logging.INFO
    assert "13812345678" not in caplog.text


def test_console_ids_are_unique():
    sms = ConsoleSms()

    assert sms.send(FAMILY_MOBILE, BODY) != sms.send(FAMILY_MOBILE, BODY)


def test_make_backend_console(tmp_path):
    settings = load_settings({"HOTLINE_INSTANCE_DIR": str(tmp_path)})

    assert isinstance(make_sms_backend(settings), ConsoleSms)


def test_make_backend_twilio_uses_settings(tmp_path, twilio_mock):  # noqa: F811
    settings = load_settings({
        "HOTLINE_INSTANCE_DIR": str(tmp_path),
        "HOTLINE_SMS_BACKEND": "twilio",
        "HOTLINE_SECRET_KEY": "test-secret-key-0123456789",
        "HOTLINE_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "HOTLINE_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HOTLINE_TWILIO_API_BASE_URL": twilio_mock.base_url,
        "HOTLINE_TWILIO_FROM_NUMBER": "+862159200497",
    })

    backend = make_sms_backend(settings)
    backend.send(FAMILY_MOBILE, BODY)

    assert isinstance(backend, TwilioSms)
    assert twilio_mock.requests[0].form["From"] == "+862159200497"
    assert twilio_mock.requests[0].basic_auth == (ACCOUNT_SID, AUTH_TOKEN)


def test_twilio_settings_fixture_targets_mock(twilio_settings, twilio_mock):  # noqa: F811
    make_sms_backend(twilio_settings).send(FAMILY_MOBILE, BODY)

    assert twilio_mock.requests[0].form["From"] == twilio_settings.twilio_from_number
    assert twilio_mock.requests[0].basic_auth == (twilio_settings.twilio_account_sid, twilio_settings.twilio_auth_token)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613812345678", "138****5678"),
        ("13812345678", "138****5678"),
        ("+86 138 1234 5678", "138****5678"),
        ("+862159200496", "5920****"),
        ("+862159203790", "5920****"),
        ("+861062345678", "6234****"),
        ("+8657187654321", "8765****"),
        ("+865718765432", "876****"),
        ("+14155550123", "****0123"),
        ("962840", "****2840"),
        ("110", "****"),
        ("", "****"),
    ],
)
def test_mask_phone(number, masked):
    assert mask_phone(number) == masked
