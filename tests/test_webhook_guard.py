"""The SSRF guard of webhooks: which addresses a receiver may have, registration checks with DNS, the check
again at delivery (DNS rebinding), and deliveries pinned to the checked address, over http and TLS.

DNS is `fake_dns` (tests/webhook_receiver.py): no name is looked up outside the machine.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests
import time_machine
import trustme
from click.testing import CliRunner
from sqlmodel import select
from webhook_receiver import start_receiver

from hotline import ssrf_guard
from hotline.cli import main
from hotline.models import ApiToken, OutboxMessage
from workers import jobs

START = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Monday
REFERRAL = {
    "external_id": "SQY-20261207-0031",
    "resident": {"name": "钱芳", "phone": "13812345678", "town": "盈浦街道", "committee": "西部花苑居委会"},
    "category": "consultation",
}
# A globally routable address for names that must pass the check; no test connects to it.
PUBLIC_ADDRESS = "1.2.3.4"
PUBLIC_NAME = "hooks.example.cn"
# The receiver's name in the pinning tests; fake_dns resolves it to 127.0.0.1.
RECEIVER_NAME = "hooks.example.test"


def _bearer(token: str, language: str = "en") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept-Language": language}


def _register(client, token: str, url: str, language: str = "en"):
    return client.put("/api/v1/webhook", json={"url": url}, headers=_bearer(token, language))


def _refer_and_claim(client, seeded) -> str:
    number = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(seeded["shequyun"])).get_json()["number"]
    claimed = client.post(f"/api/v1/tickets/{number}/claim", headers=_bearer(seeded["operator"]))
    assert claimed.status_code == 200, claimed.get_json()
    return number


def _delivery(runtime) -> OutboxMessage:
    with runtime.transaction() as session:
        return session.exec(select(OutboxMessage).where(OutboxMessage.channel == "webhook")).one()


# --- addresses ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("address, problem", [
    ("127.0.0.1", "a loopback address"),
    ("::1", "a loopback address"),
    ("10.0.0.5", "a private address"),
    ("172.16.3.4", "a private address"),
    ("192.168.1.20", "a private address"),
    ("fd00::1", "a private address"),
    ("169.254.169.254", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("0.0.0.0", "the unspecified address"),
    ("::", "the unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("ff02::1", "a multicast address"),
    ("100.100.100.200", "not a globally routable address"),
    ("::ffff:10.0.0.5", "a private address"),
    ("::ffff:127.0.0.1", "a loopback address"),
    ("2002:a00:5::", "which carries 10.0.0.5, a private address"),
])
def test_address_problem_named(address, problem):
    assert ssrf_guard.address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", [
    "240.0.0.1",  # reserved for future use
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "::127.0.0.1",  # IPv4-compatible, deprecated
    "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",  # documentation
])
def test_address_problem_rejects_other_ranges(address):
    assert ssrf_guard.address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["1.2.3.4", "2400:3200::1", "::ffff:1.2.3.4"])
def test_public_address_allowed(address):
    assert ssrf_guard.address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_allowed_when_asked(address):
    assert ssrf_guard.address_problem(ipaddress.ip_address(address), allow_loopback=True) is None


@pytest.mark.parametrize("address", ["10.0.0.5", "169.254.169.254", "2002:7f00:1::"])
def test_allow_loopback_keeps_other_rejections(address):
    assert ssrf_guard.address_problem(ipaddress.ip_address(address), allow_loopback=True) is not None


# --- resolving ---------------------------------------------------------------------------------------


def test_resolve_keeps_order_without_duplicates(fake_dns):
    fake_dns.answers[PUBLIC_NAME] = ["1.2.3.4", "2400:3200::1", "1.2.3.4"]

    addresses = ssrf_guard.resolve(PUBLIC_NAME)

    assert addresses == [ipaddress.ip_address("1.2.3.4"), ipaddress.ip_address("2400:3200::1")]


def test_resolve_ip_literal_without_lookup(fake_dns):
    assert ssrf_guard.resolve("2400:3200::1") == [ipaddress.ip_address("2400:3200::1")]
    assert fake_dns.lookups == []


def test_any_internal_address_rejects_host(fake_dns):
    fake_dns.answers[PUBLIC_NAME] = ["1.2.3.4", "10.0.0.5"]

    with pytest.raises(ssrf_guard.AddressRejected) as raised:
        ssrf_guard.checked_addresses(PUBLIC_NAME)

    assert str(raised.value) == "hooks.example.cn resolves to 10.0.0.5, a private address"


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1"])
def test_numeric_host_forms_resolved_and_rejected(host):
    """getaddrinfo reads these legacy IPv4 forms as 127.0.0.1 without any DNS query."""
    with pytest.raises(ssrf_guard.AddressRejected) as raised:
        ssrf_guard.checked_addresses(host)

    assert raised.value.address == ipaddress.ip_address("127.0.0.1")


def test_unknown_name_lookup_failed(fake_dns):
    with pytest.raises(ssrf_guard.LookupFailed) as raised:
        ssrf_guard.checked_addresses("missing.example.cn")

    assert not raised.value.temporary
    assert "missing.example.cn" in str(raised.value)


def test_dns_unavailable_lookup_temporary(fake_dns):
    fake_dns.unavailable.add(PUBLIC_NAME)

    with pytest.raises(ssrf_guard.LookupFailed) as raised:
        ssrf_guard.checked_addresses(PUBLIC_NAME)

    assert raised.value.temporary
    assert "Temporary failure in name resolution" in str(raised.value)


def test_slow_lookup_times_out(fake_dns, monkeypatch):
    monkeypatch.setattr(ssrf_guard, "LOOKUP_TIMEOUT_SECONDS", 0.2)
    fake_dns.hanging.add("slow.example.cn")
    started = time.monotonic()

    with pytest.raises(ssrf_guard.LookupFailed) as raised:
        ssrf_guard.checked_addresses("slow.example.cn")

    assert raised.value.temporary
    assert "timed out after 0.2 s" in str(raised.value)
    assert time.monotonic() - started < 2


# --- registration ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://hooks.example.cn/x", "http://127.0.0.1:8080/x", "http://localhost/x", "ftp://127.0.0.1/x",
    "https://user:pw@example.cn/", "not a url", "https://example.cn:99999/", "https://127.0.0.1/h",
    "https://[::1]/h", "https://localhost/h", "https://10.0.0.1/h", "https://192.168.1.20/h",
    "https://169.254.169.254/latest/meta-data/", "https://100.100.100.200/latest/meta-data/", "https://[fd00::1]/h",
    "https://[::ffff:10.0.0.1]/h", "https://0.0.0.0/h", "https://224.0.0.1/h",
])
def test_register_rejects_bad_url(client, seeded, fake_dns, url):
    fake_dns.answers["localhost"] = ["127.0.0.1", "::1"]
    fake_dns.answers[PUBLIC_NAME] = [PUBLIC_ADDRESS]

    response = _register(client, seeded["shequyun"], url)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "url"
    assert response.get_json()["error"]["code"] == "invalid_url"


@pytest.mark.parametrize("answer", [["10.0.0.5"], ["127.0.0.1"], [PUBLIC_ADDRESS, "169.254.169.254"]])
def test_register_rejects_name_resolving_internally(client, seeded, fake_dns, answer):
    fake_dns.answers["intranet.example"] = answer

    response = _register(client, seeded["shequyun"], "https://intranet.example/hook")

    error = response.get_json()["error"]
    assert response.status_code == 422
    assert (error["code"], error["field"]) == ("invalid_url", "url")
    assert "loopback, private or reserved" in error["message"]
    assert fake_dns.lookups == ["intranet.example"]


def test_register_internal_name_message_in_chinese(client, seeded, fake_dns):
    fake_dns.answers["intranet.example"] = ["10.0.0.5"]

    response = _register(client, seeded["shequyun"], "https://intranet.example/hook", language="zh-CN")

    assert response.get_json()["error"]["message"] == "字段 url 不能指向本机、内网或保留网段的地址。"


def test_register_public_name_accepted(client, seeded, fake_dns):
    fake_dns.answers[PUBLIC_NAME] = [PUBLIC_ADDRESS, "2400:3200::1"]

    response = _register(client, seeded["shequyun"], f"https://{PUBLIC_NAME}/hooks/hotline")

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["url"] == f"https://{PUBLIC_NAME}/hooks/hotline"


def test_register_unknown_name_422(client, seeded, fake_dns):
    english = _register(client, seeded["shequyun"], "https://missing.example.cn/hook")
    chinese = _register(client, seeded["shequyun"], "https://missing.example.cn/hook", language="zh-CN")

    assert english.status_code == 422
    assert english.get_json()["error"]["code"] == "unresolved_host"
    assert english.get_json()["error"]["field"] == "url"
    assert english.get_json()["error"]["message"] == (
        "The host name missing.example.cn in field url was not found; check the URL.")
    assert chinese.get_json()["error"]["message"] == "字段 url 中的主机名 missing.example.cn 无法解析，请检查网址。"


def test_register_lookup_timeout_422(client, seeded, fake_dns, monkeypatch):
    monkeypatch.setattr(ssrf_guard, "LOOKUP_TIMEOUT_SECONDS", 0.2)
    fake_dns.hanging.add("slow.example.cn")

    response = _register(client, seeded["shequyun"], "https://slow.example.cn/hook")

    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "unresolved_host"
    assert "try again later" in response.get_json()["error"]["message"]


def test_register_rejection_changes_nothing(client, seeded, fake_dns):
    fake_dns.answers[PUBLIC_NAME] = [PUBLIC_ADDRESS]
    _register(client, seeded["shequyun"], f"https://{PUBLIC_NAME}/hook")
    fake_dns.answers["intranet.example"] = ["10.0.0.5"]

    rejected = _register(client, seeded["shequyun"], "https://intranet.example/hook")
    current = client.get("/api/v1/webhook", headers=_bearer(seeded["shequyun"]))

    assert rejected.status_code == 422
    assert current.get_json()["url"] == f"https://{PUBLIC_NAME}/hook"


def test_register_loopback_receiver_rejected_by_default(client, seeded, receiver):
    response = _register(client, seeded["shequyun"], receiver.url)

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "url"


@pytest.mark.webhook_loopback
def test_register_loopback_receiver_allowed_by_setting(client, seeded, receiver):
    http = _register(client, seeded["shequyun"], receiver.url)
    https = _register(client, seeded["shequyun"], receiver.url.replace("http://", "https://"))

    assert http.status_code == 201
    assert https.status_code == 200


@pytest.mark.webhook_loopback
@pytest.mark.parametrize("url", ["https://10.0.0.1/h", "https://169.254.169.254/", "https://[fd00::1]/h"])
def test_loopback_setting_keeps_private_rejected(client, seeded, url):
    response = _register(client, seeded["shequyun"], url)

    assert response.status_code == 422


@pytest.mark.webhook_loopback
def test_plain_http_needs_loopback_only(client, seeded, fake_dns):
    fake_dns.answers["mixed.example.cn"] = ["127.0.0.1", PUBLIC_ADDRESS]

    response = _register(client, seeded["shequyun"], "http://mixed.example.cn/hook")

    assert response.status_code == 422
    assert "https" in response.get_json()["error"]["message"]


def test_cli_register_rejects_loopback_by_default(runtime, seeded, settings, receiver):
    env = {"HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_INSTANCE_DIR": str(settings.instance_dir)}
    with runtime.transaction() as session:
        prefix = session.exec(select(ApiToken.prefix).where(ApiToken.name == "shequyun")).one()

    result = CliRunner().invoke(main, ["tokens", "webhook", prefix, "--url", receiver.url], env=env)

    assert result.exit_code == 2
    assert "必须是 https 网址" in result.output


# --- delivery ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rebound, problem", [
    ("10.0.0.5", "a private address"),
    ("127.0.0.1", "a loopback address"),
    ("169.254.169.254", "a link-local address"),
])
def test_delivery_rejected_after_rebinding(client, seeded, runtime, fake_dns, caplog, rebound, problem):
    fake_dns.answers[PUBLIC_NAME] = [PUBLIC_ADDRESS]
    with time_machine.travel(START, tick=False) as traveller:
        assert _register(client, seeded["shequyun"], f"https://{PUBLIC_NAME}/hook").status_code == 201
        fake_dns.answers[PUBLIC_NAME] = [rebound]
        with caplog.at_level(logging.WARNING, logger="hotline"):
            _refer_and_claim(client, seeded)
        lookups_after_attempt = len(fake_dns.lookups)
        traveller.shift(timedelta(hours=1))
        jobs.sweep_outbox()

    delivery = _delivery(runtime)
    assert delivery.status == "failed"
    assert delivery.attempts == 1
    assert delivery.last_error == f"not sent: {PUBLIC_NAME} resolves to a loopback, private or reserved address"
    assert rebound not in delivery.last_error, "the platform does not learn what the hotline's DNS answered"
    assert len(fake_dns.lookups) == lookups_after_attempt, "a rejected delivery is not tried again"
    rejection = next(record.getMessage() for record in caplog.records if "SSRF guard" in record.getMessage())
    assert f"delivery {delivery.id} " in rejection
    assert f"to {delivery.recipient} " in rejection, "the log names the webhook as webhook:<id>"
    assert f"{PUBLIC_NAME} resolves to {rebound}, {problem}" in rejection


def test_delivery_lookup_failure_retried(client, seeded, runtime, fake_dns):
    fake_dns.answers[PUBLIC_NAME] = [PUBLIC_ADDRESS]
    with time_machine.travel(START, tick=False):
        _register(client, seeded["shequyun"], f"https://{PUBLIC_NAME}/hook")
        del fake_dns.answers[PUBLIC_NAME]
        _refer_and_claim(client, seeded)

    delivery = _delivery(runtime)
    assert delivery.status == "pending"
    assert delivery.last_error.startswith(f"DNS lookup of {PUBLIC_NAME} failed")
    assert delivery.next_attempt_at is not None


@pytest.mark.webhook_loopback
def test_loopback_setting_turned_off_stops_delivery(client, seeded, runtime, receiver):
    _register(client, seeded["shequyun"], receiver.url)
    runtime.settings = replace(runtime.settings, webhook_allow_loopback=False)

    _refer_and_claim(client, seeded)

    delivery = _delivery(runtime)
    assert receiver.requests == []
    assert delivery.status == "failed"
    assert delivery.last_error == "not sent: 127.0.0.1 resolves to a loopback, private or reserved address"


@pytest.mark.webhook_loopback
def test_delivery_connects_to_checked_address(client, seeded, runtime, receiver, fake_dns):
    fake_dns.answers[RECEIVER_NAME] = ["127.0.0.1"]
    url = receiver.url_at(RECEIVER_NAME)
    assert _register(client, seeded["shequyun"], url).status_code == 201

    _refer_and_claim(client, seeded)

    assert len(receiver.requests) == 1
    assert receiver.requests[0]["headers"]["Host"] == f"{RECEIVER_NAME}:{receiver.server.server_address[1]}"
    assert fake_dns.lookups == [RECEIVER_NAME, RECEIVER_NAME], "one lookup to register, one to deliver, none more"
    assert _delivery(runtime).status == "sent"


@pytest.mark.webhook_loopback
def test_delivery_tries_next_checked_address(client, seeded, runtime, receiver, fake_dns):
    fake_dns.answers[RECEIVER_NAME] = ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2
    _register(client, seeded["shequyun"], receiver.url_at(RECEIVER_NAME))

    _refer_and_claim(client, seeded)

    assert len(receiver.requests) == 1
    assert _delivery(runtime).status == "sent"


@pytest.mark.webhook_loopback
def test_plain_http_rebound_to_public_rejected(client, seeded, runtime, receiver, fake_dns):
    fake_dns.answers[RECEIVER_NAME] = ["127.0.0.1"]
    _register(client, seeded["shequyun"], receiver.url_at(RECEIVER_NAME))
    fake_dns.answers[RECEIVER_NAME] = [PUBLIC_ADDRESS]

    _refer_and_claim(client, seeded)

    delivery = _delivery(runtime)
    assert delivery.status == "failed"
    assert delivery.last_error == (f"not sent: the URL is plain http and {RECEIVER_NAME} resolves to an "
                                   "address that is not loopback")


# --- TLS to a pinned address -------------------------------------------------------------------------


@pytest.fixture
def certificate_authority(tmp_path, monkeypatch):
    """A test CA that requests trusts in place of its bundled one."""
    authority = trustme.CA()
    bundle = tmp_path / "test-ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(bundle))
    return authority


def _tls_receiver(authority: trustme.CA, host_name: str):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(host_name).configure_cert(context)
    return start_receiver(context)


@pytest.mark.webhook_loopback
def test_tls_delivery_sends_host_name(client, seeded, runtime, fake_dns, certificate_authority):
    fake_dns.answers[RECEIVER_NAME] = ["127.0.0.1"]
    receiver = _tls_receiver(certificate_authority, RECEIVER_NAME)
    try:
        assert _register(client, seeded["shequyun"], receiver.url_at(RECEIVER_NAME)).status_code == 201
        _refer_and_claim(client, seeded)
    finally:
        receiver.stop()

    assert receiver.server_names == [RECEIVER_NAME], "SNI carries the URL's host name, not the address"
    assert len(receiver.requests) == 1
    assert receiver.requests[0]["headers"]["Host"] == f"{RECEIVER_NAME}:{receiver.server.server_address[1]}"
    assert _delivery(runtime).status == "sent"


@pytest.mark.webhook_loopback
def test_tls_certificate_for_other_name_fails(client, seeded, runtime, fake_dns, certificate_authority):
    fake_dns.answers[RECEIVER_NAME] = ["127.0.0.1"]
    receiver = _tls_receiver(certificate_authority, "other.example.test")
    try:
        _register(client, seeded["shequyun"], receiver.url_at(RECEIVER_NAME))
        _refer_and_claim(client, seeded)
    finally:
        receiver.stop()

    delivery = _delivery(runtime)
    assert receiver.requests == []
    assert delivery.status == "pending", "a certificate error is retried like any failed attempt"
    assert delivery.last_error.startswith("SSLError")
    assert "certificate is not valid for 'hooks.example.test'" in delivery.last_error
