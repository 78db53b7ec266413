"""Webhooks: registration, signed deliveries through the outbox, retries while the receiver is down,
and failure after 24 h.

The receiver listens on 127.0.0.1, so every test here allows loopback webhooks (`webhook_loopback`);
tests/test_webhook_guard.py covers what is rejected by default."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner
from sqlmodel import select

from hotline import tokens, webhooks
from hotline.cli import main
from hotline.models import ApiToken, OutboxMessage
from workers import jobs

pytestmark = pytest.mark.webhook_loopback

START = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Monday
REFERRAL = {
    "external_id": "SQY-20261207-0007",
    "resident": {"name": "钱芳", "phone": "13812345678", "town": "盈浦街道", "committee": "西部花苑居委会"},
    "category": "consultation",
}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"
# The worked example of docs/webhooks.md.
EXAMPLE_SECRET = "whsec_0123456789abcdef0123456789abcdef0123456789abcdef"
EXAMPLE_TIMESTAMP = "1796605200"
EXAMPLE_BODY = ('{"type":"referral.status_changed","event_id":1042,"occurred_at":"2026-12-07T09:00:00+08:00",'
                '"source":"shequyun","external_id":"SQY-20261207-0007","ticket_number":"QP-20261207-0012",'
                '"previous_status":"new","status":"in_progress","status_label":"处理中"}')


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept-Language": "en"}


def _register(client, token: str, url: str):
    return client.put("/api/v1/webhook", json={"url": url}, headers=_bearer(token))


def _refer_and_claim(client, seeded) -> str:
    number = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(seeded["shequyun"])).get_json()["number"]
    claimed = client.post(f"/api/v1/tickets/{number}/claim", headers=_bearer(seeded["operator"]))
    assert claimed.status_code == 200, claimed.get_json()
    return number


def _verify(secret: str, request: dict) -> bool:
    timestamp = request["headers"]["X-Hotline-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.{request['body']}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(request["headers"]["X-Hotline-Signature"], "sha256=" + expected)


def _deliveries(runtime) -> list[OutboxMessage]:
    with runtime.transaction() as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.channel == "webhook")
                                 .order_by(OutboxMessage.id)).all())


def test_signature_matches_documented_example():
    text = DOCS.read_text(encoding="utf-8")
    expected = webhooks.signature(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY)

    assert f"`{EXAMPLE_SECRET}`" in text
    assert f"`{EXAMPLE_TIMESTAMP}`" in text
    assert EXAMPLE_BODY in text
    assert re.search(rf"sha256={expected}\b", text), f"docs/webhooks.md must show sha256={expected}"


def test_register_returns_secret_once(client, seeded, receiver):
    first = _register(client, seeded["shequyun"], receiver.url)
    shown = client.get("/api/v1/webhook", headers=_bearer(seeded["shequyun"]))
    second = _register(client, seeded["shequyun"], receiver.url)

    assert first.status_code == 201
    assert first.get_json()["secret"].startswith("whsec_")
    assert shown.status_code == 200
    assert "secret" not in shown.get_json()
    assert shown.get_json()["url"] == receiver.url
    assert second.status_code == 200
    assert second.get_json()["secret"] != first.get_json()["secret"]


def test_register_needs_source_token(client, seeded, receiver):
    response = _register(client, seeded["operator"], receiver.url)

    assert response.status_code == 403


def test_status_change_delivered_signed(client, seeded, receiver, runtime):
    secret = _register(client, seeded["shequyun"], receiver.url).get_json()["secret"]

    number = _refer_and_claim(client, seeded)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert _verify(secret, request)
    payload = json.loads(request["body"])
    assert payload["type"] == "referral.status_changed"
    assert payload["ticket_number"] == number
    assert payload["external_id"] == REFERRAL["external_id"]
    assert (payload["previous_status"], payload["status"], payload["status_label"]) == ("new", "in_progress", "处理中")
    assert payload["occurred_at"].endswith("+08:00")
    assert request["headers"]["Content-Type"].startswith("application/json")
    [delivery] = _deliveries(runtime)
    assert delivery.status == "sent"


def test_other_sources_changes_not_sent(client, seeded, receiver):
    _register(client, seeded["shequyun"], receiver.url)
    number = client.post("/api/v1/referrals", json=REFERRAL,
                         headers=_bearer(seeded["community_worker"])).get_json()["number"]

    client.post(f"/api/v1/tickets/{number}/claim", headers=_bearer(seeded["operator"]))

    assert receiver.requests == []


def test_revoked_token_gets_no_deliveries(client, seeded, receiver, runtime):
    _register(client, seeded["shequyun"], receiver.url)
    with runtime.transaction() as session:
        token = session.exec(select(ApiToken).where(ApiToken.name == "shequyun")).one()
        token.revoked_at = START
        session.add(token)
        second_token = tokens.create_token(session, "shequyun second", source="shequyun")

    number = client.post("/api/v1/referrals", json=REFERRAL, headers=_bearer(second_token)).get_json()["number"]
    client.post(f"/api/v1/tickets/{number}/claim", headers=_bearer(seeded["operator"]))

    assert receiver.requests == []


def test_receiver_down_for_an_hour_then_delivered(client, seeded, receiver, runtime):
    with time_machine.travel(START, tick=False) as traveller:
        secret = _register(client, seeded["shequyun"], receiver.url).get_json()["secret"]
        receiver.status = 503
        _refer_and_claim(client, seeded)
        for _ in range(12):  # five-minute steps through the hour the receiver is down
            traveller.shift(timedelta(minutes=5))
            jobs.sweep_outbox()
        failed_attempts = len(receiver.requests)

        receiver.status = 200
        traveller.shift(timedelta(hours=1))
        jobs.sweep_outbox()

    assert failed_attempts >= 6, "retries back off exponentially: 30 s, 1, 2, 4, 8, 16, 32 min"
    assert all(request["status"] == 503 for request in receiver.requests[:failed_attempts])
    assert receiver.requests[-1]["status"] == 200
    assert len(receiver.requests) == failed_attempts + 1
    assert len({request["body"] for request in receiver.requests}) == 1, "every attempt sends the same body"
    assert all(_verify(secret, request) for request in receiver.requests)
    [delivery] = _deliveries(runtime)
    assert delivery.status == "sent"
    assert delivery.attempts == failed_attempts + 1


def test_gives_up_after_24_hours(client, seeded, receiver, runtime):
    with time_machine.travel(START, tick=False) as traveller:
        _register(client, seeded["shequyun"], receiver.url)
        receiver.status = 500
        _refer_and_claim(client, seeded)
        for _ in range(26):
            traveller.shift(timedelta(hours=1))
            jobs.sweep_outbox()
        attempts_at_end = len(receiver.requests)
        traveller.shift(timedelta(hours=5))
        jobs.sweep_outbox()

    [delivery] = _deliveries(runtime)
    assert delivery.status == "failed"
    assert delivery.last_error == "HTTP 500"
    assert len(receiver.requests) == attempts_at_end, "nothing is sent once the delivery failed"
    last_attempt = datetime.fromtimestamp(int(receiver.requests[-1]["headers"]["X-Hotline-Timestamp"]), UTC)
    assert last_attempt == START + timedelta(hours=24), "the last attempt is made when the 24 hours end"


def test_deliveries_listed_for_platform(client, seeded, receiver):
    with time_machine.travel(START, tick=False) as traveller:
        _register(client, seeded["shequyun"], receiver.url)
        receiver.status = 500
        number = _refer_and_claim(client, seeded)
        receiver.status = 200
        client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "resolved"},
                    headers=_bearer(seeded["operator"]))
        traveller.shift(timedelta(minutes=1))

        listed = client.get("/api/v1/webhook/deliveries", headers=_bearer(seeded["shequyun"]))
        pending_only = client.get("/api/v1/webhook/deliveries?state=pending", headers=_bearer(seeded["shequyun"]))

    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert [(item["body"]["status"], item["state"]) for item in items] == [("resolved", "delivered"),
                                                                            ("in_progress", "pending")]
    assert items[1]["last_error"] == "HTTP 500"
    assert items[1]["next_attempt_at"].endswith("+08:00")
    assert items[0]["delivered_at"].endswith("+08:00")
    assert [item["body"]["status"] for item in pending_only.get_json()["items"]] == ["in_progress"]


def test_deliveries_without_webhook_404(client, seeded):
    response = client.get("/api/v1/webhook/deliveries", headers=_bearer(seeded["shequyun"]))

    assert response.status_code == 404


def test_deleted_webhook_fails_pending_delivery(client, seeded, receiver, runtime):
    with time_machine.travel(START, tick=False) as traveller:
        _register(client, seeded["shequyun"], receiver.url)
        receiver.status = 500
        _refer_and_claim(client, seeded)
        deleted = client.delete("/api/v1/webhook", headers=_bearer(seeded["shequyun"]))
        traveller.shift(timedelta(minutes=5))
        jobs.sweep_outbox()

    assert deleted.status_code == 204
    [delivery] = _deliveries(runtime)
    assert delivery.status == "failed"
    assert len(receiver.requests) == 1


def test_cli_webhook_register_and_show(client, seeded, receiver, runtime, settings):
    env = {"HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_INSTANCE_DIR": str(settings.instance_dir),
           "HOTLINE_WEBHOOK_ALLOW_LOOPBACK": "true"}
    with runtime.transaction() as session:
        prefix = session.exec(select(ApiToken.prefix).where(ApiToken.name == "shequyun")).one()

    registered = CliRunner().invoke(main, ["tokens", "webhook", prefix, "--url", receiver.url], env=env)
    secret = re.search(r"签名密钥（只显示这一次）：(\S+)", registered.output).group(1)
    receiver.status = 500
    _refer_and_claim(client, seeded)
    shown = CliRunner().invoke(main, ["tokens", "webhook", prefix, "--show"], env=env)
    english = CliRunner().invoke(main, ["tokens", "webhook", prefix, "--show"], env={**env, "LANG": "en_US.UTF-8"})

    assert registered.exit_code == 0, registered.output
    assert f"已为令牌 {prefix}（社区云）登记回调地址 {receiver.url}。" in registered.output
    assert _verify(secret, receiver.requests[0])
    assert shown.exit_code == 0, shown.output
    assert f"网址：{receiver.url}" in shown.output
    assert "来源：社区云" in shown.output
    delivery_line = next(line for line in shown.output.splitlines() if "处理中" in line)
    assert "待推送" in delivery_line
    assert "尝试 1 次" in delivery_line
    assert "HTTP 500" in delivery_line
    assert english.exit_code == 0, english.output
    assert f"URL: {receiver.url}" in english.output
    assert "The latest 1 delivery:" in english.output
    english_line = next(line for line in english.output.splitlines() if "In progress" in line)
    assert "Pending  1 attempt" in english_line


def test_cli_webhook_rejects_staff_token(runtime, seeded, settings):
    env = {"HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_INSTANCE_DIR": str(settings.instance_dir)}
    with runtime.transaction() as session:
        prefix = session.exec(select(ApiToken.prefix).where(ApiToken.name == "operator")).one()

    result = CliRunner().invoke(main, ["tokens", "webhook", prefix, "--url", "https://example.cn/hook"], env=env)

    assert result.exit_code == 1
    assert f"令牌 {prefix} 是员工令牌" in result.output
