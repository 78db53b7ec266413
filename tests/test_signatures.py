"""Twilio webhook signatures, checked against values computed here from Twilio's published algorithm."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from werkzeug.datastructures import MultiDict

from hotline.telephony.signatures import compute_signature, is_valid_signature, public_url

AUTH_TOKEN = "12345"
URL = "https://hotline.example.test/twilio/voice?source=pstn"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+8613812345678",
    "Digits": "2",
    "From": "+8613812345678",
    "To": "+862159200496",
}


def reference_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """URL, then each name and value sorted by name, HMAC-SHA1 under the auth token, base64."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def test_compute_signature_matches_reference():
    expected = reference_signature(AUTH_TOKEN, URL, PARAMS)

    assert compute_signature(AUTH_TOKEN, URL, PARAMS) == expected


def test_compute_signature_known_vector():
    # Computed once with Python's hmac module over the signed string
    # "https://hotline.example.test/twilio/voice?source=pstn"
    # "CallSidCA1234567890ABCDECaller+8613812345678Digits2From+8613812345678To+862159200496".
    assert compute_signature(AUTH_TOKEN, URL, PARAMS) == "+/4kSCQBVLklXNnAOMrhIKbfy+Y="


def test_compute_signature_sorts_params():
    shuffled = dict(reversed(list(PARAMS.items())))

    assert compute_signature(AUTH_TOKEN, URL, shuffled) == compute_signature(AUTH_TOKEN, URL, PARAMS)


def test_valid_signature_accepted():
    signature = reference_signature(AUTH_TOKEN, URL, PARAMS)

    assert is_valid_signature(AUTH_TOKEN, URL, PARAMS, signature)


def test_valid_signature_accepted_from_multidict():
    signature = reference_signature(AUTH_TOKEN, URL, PARAMS)

    assert is_valid_signature(AUTH_TOKEN, URL, MultiDict(PARAMS), signature)


def test_chinese_body_signature():
    params = {**PARAMS, "Body": "请问遗体接运怎么预约？"}
    signature = reference_signature(AUTH_TOKEN, URL, params)

    assert is_valid_signature(AUTH_TOKEN, URL, params, signature)


def test_wrong_token_rejected():
    signature = reference_signature("another-token", URL, PARAMS)

    assert not is_valid_signature(AUTH_TOKEN, URL, PARAMS, signature)


@pytest.mark.parametrize(
    ("name", "value"), [("Digits", "1"), ("From", "+8613900000000"), ("Extra", "")],
)
def test_changed_param_rejected(name, value):
    signature = reference_signature(AUTH_TOKEN, URL, PARAMS)
    tampered = {**PARAMS, name: value}

    assert not is_valid_signature(AUTH_TOKEN, URL, tampered, signature)


def test_removed_param_rejected():
    signature = reference_signature(AUTH_TOKEN, URL, PARAMS)
    trimmed = {name: value for name, value in PARAMS.items() if name != "Digits"}

    assert not is_valid_signature(AUTH_TOKEN, URL, trimmed, signature)


@pytest.mark.parametrize(
    "other_url",
    [
        "http://hotline.example.test/twilio/voice?source=pstn",
        "https://attacker.example.test/twilio/voice?source=pstn",
        "https://hotline.example.test/twilio/voice/menu?source=pstn",
        "https://hotline.example.test/twilio/voice?source=sip",
        "https://hotline.example.test/twilio/voice",
    ],
)
def test_changed_url_rejected(other_url):
    signature = reference_signature(AUTH_TOKEN, URL, PARAMS)

    assert not is_valid_signature(AUTH_TOKEN, other_url, PARAMS, signature)


@pytest.mark.parametrize("signature", [None, ""])
def test_missing_signature_rejected(signature):
    assert not is_valid_signature(AUTH_TOKEN, URL, PARAMS, signature)


def test_empty_auth_token_rejected():
    signature = reference_signature("", URL, PARAMS)

    assert not is_valid_signature("", URL, PARAMS, signature)


def test_default_port_accepted_either_way():
    signed_with_port = "https://hotline.example.test:443/twilio/voice?source=pstn"
    signature = reference_signature(AUTH_TOKEN, signed_with_port, PARAMS)

    assert is_valid_signature(AUTH_TOKEN, URL, PARAMS, signature)


@pytest.mark.parametrize(
    ("request_url", "base_url", "expected"),
    [
        ("http://127.0.0.1:8000/twilio/voice", "https://hotline.example.test",
         "https://hotline.example.test/twilio/voice"),
        ("http://127.0.0.1:8000/twilio/voice?source=pstn&x=%E4%B8%AD", "https://hotline.example.test",
         "https://hotline.example.test/twilio/voice?source=pstn&x=%E4%B8%AD"),
        ("http://localhost/twilio/voice/menu", "https://hotline.example.test:8443",
         "https://hotline.example.test:8443/twilio/voice/menu"),
        ("https://internal:9000/twilio/sms?a=1", "http://hotline.example.test:8080",
         "http://hotline.example.test:8080/twilio/sms?a=1"),
        ("http://127.0.0.1:8000/twilio/voice", "https://hotline.example.test/ignored-prefix",
         "https://hotline.example.test/twilio/voice"),
    ],
)
def test_public_url_rewrites_origin(request_url, base_url, expected):
    assert public_url(request_url, base_url) == expected


@pytest.mark.parametrize("base_url", [None, ""])
def test_public_url_unset_keeps_request_url(base_url):
    request_url = "http://127.0.0.1:8000/twilio/voice?source=pstn"

    assert public_url(request_url, base_url) == request_url


def test_signature_checked_on_public_url():
    public = "https://hotline.example.test/twilio/voice?source=pstn"
    signature = reference_signature(AUTH_TOKEN, public, PARAMS)
    seen_by_flask = "http://127.0.0.1:8000/twilio/voice?source=pstn"

    assert not is_valid_signature(AUTH_TOKEN, seen_by_flask, PARAMS, signature)
    assert is_valid_signature(AUTH_TOKEN, public_url(seen_by_flask, "https://hotline.example.test"), PARAMS, signature)
