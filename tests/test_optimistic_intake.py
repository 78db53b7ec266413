"""Referrals filed in one statement under a token this process authenticated before (hotline.optimistic_intake).

On PostgreSQL the second referral of a token takes the optimistic path. Each test checks that the
response is the one the ordinary path returns, and on PostgreSQL which path filed the referral.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlmodel import func, select
from test_referrals_api import REFERRAL

from hotline import optimistic_intake, tokens
from hotline.driver_sql import positional
from hotline.models import ApiToken, Call, Referral, Ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


@pytest.fixture
def optimistic_outcomes(monkeypatch):
    """Record whether each optimistic attempt filed its referral (True) or left it to the ordinary path."""
    outcomes = []
    attempt = optimistic_intake.take_referral

    def recording(*args, **kwargs):
        result = attempt(*args, **kwargs)
        outcomes.append(result is not None)
        return result

    monkeypatch.setattr(optimistic_intake, "take_referral", recording)
    return outcomes


def _post(client, token, body):
    return client.post("/api/v1/referrals", json=body,
                       headers={"Authorization": f"Bearer {token}", "Accept-Language": "en"})


def _referral(serial: int, phone: str | None = None) -> dict:
    body = {**REFERRAL, "external_id": f"OPT-{serial:04d}"}
    body["resident"] = {**REFERRAL["resident"], "phone": phone or f"+86 1776738{serial:04d}"}
    return body


def _expected(runtime, *outcomes: bool) -> list[bool]:
    """The optimistic outcomes a test expects: none on SQLite, which always takes the ordinary path."""
    return list(outcomes) if runtime.engine.dialect.name == "postgresql" else []


def _count(runtime, model) -> int:
    with runtime.transaction() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def _change_token(runtime, secret: str, **values) -> None:
    with runtime.transaction() as session:
        token = tokens.find_token(session, secret)
        for name, value in values.items():
            setattr(token, name, value)
        session.add(token)


def test_second_referral_filed_in_one_statement(client, seeded, runtime, optimistic_outcomes):
    first = _post(client, seeded["community_worker"], _referral(1))
    second = _post(client, seeded["community_worker"], _referral(2))

    assert (first.status_code, second.status_code) == (201, 201)
    body = second.get_json()
    assert body["source"] == "community_worker"
    assert body["external_id"] == "OPT-0002"
    assert body["number"] > first.get_json()["number"]
    assert body["priority"] == first.get_json()["priority"]
    assert second.headers["Location"].endswith("/api/v1/referrals/OPT-0002")
    with runtime.transaction() as session:
        referral = session.exec(select(Referral).where(Referral.external_id == "OPT-0002")).one()
        ticket = session.get(Ticket, referral.ticket_id)
        assert ticket.number == body["number"]
        assert referral.token_id == tokens.find_token(session, seeded["community_worker"]).id
    assert optimistic_outcomes == _expected(runtime, True)


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"revoked_at": datetime(2026, 12, 5, tzinfo=UTC)}, 401, "unauthorized"),
    ({"scopes": [tokens.REFERRALS_READ]}, 403, "insufficient_scope"),
])
def test_changed_token_rejected_at_once(client, seeded, runtime, optimistic_outcomes, change, status, code):
    secret = seeded["community_worker"]
    assert _post(client, secret, _referral(1)).status_code == 201
    _change_token(runtime, secret, **change)

    response = _post(client, secret, _referral(2))

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert _count(runtime, Ticket) == 1
    assert optimistic_outcomes == _expected(runtime, False)


def test_changed_token_source_applied_at_once(client, seeded, runtime, optimistic_outcomes):
    secret = seeded["community_worker"]
    assert _post(client, secret, _referral(1)).status_code == 201
    _change_token(runtime, secret, source="shequyun")

    response = _post(client, secret, _referral(2))

    assert response.status_code == 201
    assert response.get_json()["source"] == "shequyun"
    assert optimistic_outcomes == _expected(runtime, False)


def test_bad_body_from_revoked_token_answered_with_401(client, seeded, runtime, optimistic_outcomes):
    secret = seeded["community_worker"]
    assert _post(client, secret, _referral(1)).status_code == 201
    _change_token(runtime, secret, revoked_at=datetime(2026, 12, 5, tzinfo=UTC))

    response = _post(client, secret, {**_referral(2), "category": "picnic"})

    assert response.status_code == 401
    assert _count(runtime, Ticket) == 1
    assert optimistic_outcomes == []


def test_bad_body_from_live_token_names_the_field(client, seeded, runtime, optimistic_outcomes):
    secret = seeded["community_worker"]
    assert _post(client, secret, _referral(1)).status_code == 201

    response = _post(client, secret, {**_referral(2), "category": "picnic"})

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "category"
    assert _count(runtime, Ticket) == 1
    assert optimistic_outcomes == []


def test_resend_returns_the_first_ticket(client, seeded, runtime, optimistic_outcomes):
    secret = seeded["elderly_advisor"]
    assert _post(client, secret, _referral(1)).status_code == 201
    created = _post(client, secret, _referral(2))

    resent = _post(client, secret, _referral(2))

    assert (created.status_code, resent.status_code) == (201, 200)
    assert resent.get_json()["number"] == created.get_json()["number"]
    assert _count(runtime, Referral) == 2
    assert optimistic_outcomes == _expected(runtime, True, False)


def _first_ticket_with_calls(client, runtime, secret: str, phone: str, status: str, calls: int) -> None:
    first = _post(client, secret, _referral(1, phone=phone)).get_json()
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == first["number"])).one()
        ticket.status = status
        session.add(ticket)
        session.add_all(Call(call_sid=f"CA{serial:032d}", ticket_id=ticket.id, from_phone=phone)
                        for serial in range(calls))


@pytest.mark.parametrize(("status", "calls"), [("new", 0), ("closed", 3)])
def test_resident_with_history_takes_the_ordinary_path(client, seeded, runtime, optimistic_outcomes, status, calls):
    secret = seeded["community_worker"]
    phone = "+8617767380099"
    _first_ticket_with_calls(client, runtime, secret, phone, status, calls)

    second = _post(client, secret, _referral(2, phone=phone))

    assert second.status_code == 201
    assert "repeat_caller" not in second.get_json()["tags"]
    assert optimistic_outcomes == _expected(runtime, False)


def test_repeat_caller_rule_sees_the_history(client, seeded, runtime, optimistic_outcomes):
    secret = seeded["community_worker"]
    phone = "+8617767380099"
    _first_ticket_with_calls(client, runtime, secret, phone, "new", 3)

    second = _post(client, secret, _referral(2, phone=phone))

    assert second.status_code == 201
    assert "repeat_caller" in second.get_json()["tags"]
    assert optimistic_outcomes == _expected(runtime, False)


def test_use_recorded_at_most_once_a_minute(client, seeded, runtime, optimistic_outcomes):
    secret = seeded["community_worker"]

    def last_used_at():
        with runtime.transaction() as session:
            token = session.exec(select(ApiToken).where(ApiToken.token_hash == tokens.digest(secret))).one()
            return token.last_used_at

    with time_machine.travel(MONDAY_MORNING, tick=False) as traveller:
        assert _post(client, secret, _referral(1)).status_code == 201
        assert last_used_at() == MONDAY_MORNING
        traveller.shift(timedelta(seconds=30))
        assert _post(client, secret, _referral(2)).status_code == 201
        assert last_used_at() == MONDAY_MORNING
        traveller.shift(timedelta(seconds=31))
        assert _post(client, secret, _referral(3)).status_code == 201
        assert last_used_at() == MONDAY_MORNING + timedelta(seconds=61)
    assert optimistic_outcomes == _expected(runtime, True, True)


def test_concurrent_duplicates_make_one_ticket(app, seeded, runtime):
    secret = seeded["shequyun"]
    with app.test_client() as client:
        assert _post(client, secret, _referral(1)).status_code == 201
    barrier = threading.Barrier(4)
    results = []

    def send():
        with app.test_client() as own_client:
            barrier.wait()
            response = _post(own_client, secret, _referral(2))
            results.append((response.status_code, response.get_json()["number"]))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(status for status, _ in results) == [200, 200, 200, 201]
    assert len({number for _, number in results}) == 1
    assert _count(runtime, Ticket) == 2


def test_placeholders_numbered_by_first_appearance():
    statement = positional("SELECT %(b)s, %(a)s::int, %(b)s")

    assert statement.text == "SELECT $1, $2::int, $1"
    assert statement.values({"a": 7, "b": "x", "unused": 0}) == ("x", 7)


def test_stray_percent_sign_rejected():
    with pytest.raises(ValueError, match="not a %\\(name\\)s placeholder"):
        positional("SELECT 'a%' || %(a)s")
