"""Ids beyond what an id column holds: 404 for a path, 422 for a body field, never a database error."""

from __future__ import annotations

import pytest
from dispatch_helpers import body_transport_ticket
from web_helpers import csrf_token, log_in

from hotline.models import LoginAttempt, Ticket
from hotline.row_ids import MAX_ROW_ID

TOO_LARGE = [MAX_ROW_ID + 1, 2**63]


@pytest.mark.parametrize("row_id", TOO_LARGE)
def test_api_path_id_too_large_not_found(client, seeded, row_id):
    headers = {"Authorization": f"Bearer {seeded['supervisor']}"}

    agency = client.get(f"/api/v1/agencies/{row_id}", headers=headers)
    article = client.get(f"/api/v1/kb/articles/{row_id}", headers={"Authorization": f"Bearer {seeded['shequyun']}"})

    assert agency.status_code == 404
    assert agency.get_json()["error"]["code"] == "not_found"
    assert article.status_code == 404


@pytest.mark.parametrize("row_id", TOO_LARGE)
def test_page_id_too_large_not_found(client, seeded, row_id):
    log_in(client, "supervisor", "test-password")

    response = client.get(f"/supervisor/agencies/{row_id}")

    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_largest_id_still_routed(client, seeded):
    response = client.get(f"/api/v1/agencies/{MAX_ROW_ID}", headers={"Authorization": f"Bearer {seeded['supervisor']}"})

    assert response.status_code == 404


@pytest.mark.parametrize("row_id", TOO_LARGE)
def test_offer_agency_id_too_large_rejected(client, runtime, seeded, row_id):
    ticket_id = body_transport_ticket(runtime)
    with runtime.transaction() as session:
        number = session.get(Ticket, ticket_id).number

    response = client.post(f"/api/v1/tickets/{number}/offers", json={"agency_id": row_id, "reason": "家属要求"},
                           headers={"Authorization": f"Bearer {seeded['supervisor']}"})

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_value"
    assert error["field"] == "agency_id"


def test_login_user_agent_with_nul_recorded(client, seeded, runtime):
    response = client.post("/login", data={"username": "operator", "password": "wrong",
                                           "csrf_token": csrf_token(client)},
                           headers={"User-Agent": "Mozilla\x00probe"})

    assert response.status_code in (200, 401)
    with runtime.transaction() as session:
        attempt = session.exec(LoginAttempt.__table__.select()).one()
    assert attempt.user_agent == "Mozillaprobe"
