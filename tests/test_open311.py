"""Open311 GeoReport v2: services, service requests filed as referrals, reads limited to the token's source."""

from __future__ import annotations

from datetime import UTC, datetime

import time_machine
from sqlmodel import select

from hotline import tokens
from hotline.api.open311 import SERVICES
from hotline.models import Ticket

START = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
REQUEST = {
    "service_code": "body_transport",
    "phone": "13912345678",
    "last_name": "孙",
    "first_name": "丽",
    "address_string": "青浦区白鹤镇赵屯村委会12号",
    "description": "老人在家中去世，需要接运。",
    "attribute[external_id]": "12345-20261207-001",
}


def _post(client, token: str, form: dict, language: str = "zh-CN"):
    return client.post("/open311/v2/requests.json", data={**form, "api_key": token},
                       headers={"Accept-Language": language})


def test_services_listed_without_key(client, seeded):
    response = client.get("/open311/v2/services.json")

    assert response.status_code == 200
    services = response.get_json()
    assert [service["service_code"] for service in services] == [service.code for service in SERVICES]
    assert all(service["type"] == "realtime" and service["metadata"] is True for service in services)
    assert services[1]["service_name"] == "遗体接运"


def test_service_definition_lists_towns(client, seeded):
    response = client.get("/open311/v2/services/consultation.json")

    attributes = {attribute["code"]: attribute for attribute in response.get_json()["attributes"]}
    assert {"town", "committee", "external_id", "flags"} <= set(attributes)
    assert "练塘镇" in [value["key"] for value in attributes["town"]["values"]]


def test_unknown_service_definition_404(client, seeded):
    response = client.get("/open311/v2/services/wedding.json")

    assert response.status_code == 404
    assert response.get_json()[0]["code"] == 404


def test_post_files_referral(client, seeded):
    with time_machine.travel(START, tick=False):
        response = _post(client, seeded["shequyun"], REQUEST)
        ticket = client.get(f"/api/v1/tickets/{response.get_json()[0]['service_request_id']}",
                            headers={"Authorization": f"Bearer {seeded['operator']}"}).get_json()

    assert response.status_code == 201
    [created] = response.get_json()
    assert created["service_request_id"].startswith("QP-20261207-")
    assert created["service_notice"]
    assert ticket["source"] == "shequyun"
    assert ticket["category"] == "agency_service"
    assert ticket["needs"] == ["body_transport"]
    assert ticket["town"] == "白鹤镇", "the town is read from address_string"
    assert ticket["caller_name"] == "孙丽"
    assert ticket["external_id"] == "12345-20261207-001"
    assert ticket["priority"] == "P1"


def test_post_again_returns_same_request(client, seeded):
    first = _post(client, seeded["shequyun"], REQUEST)
    second = _post(client, seeded["shequyun"], REQUEST)

    assert second.status_code == 200
    assert second.get_json()[0]["service_request_id"] == first.get_json()[0]["service_request_id"]


def test_post_needs_town(client, seeded):
    response = _post(client, seeded["shequyun"], {**REQUEST, "address_string": "某小区3号"}, language="en")

    assert response.status_code == 400
    [error] = response.get_json()
    assert error["code"] == 400
    assert "attribute[town]" in error["description"]


def test_post_bad_phone_names_parameter(client, seeded):
    response = _post(client, seeded["shequyun"], {**REQUEST, "phone": "12345"}, language="en")

    assert response.status_code == 400
    assert response.get_json()[0]["description"].startswith("Phone number 12345 is not a valid number")


def test_post_two_phone_numbers_rejected(client, seeded, runtime):
    response = _post(client, seeded["shequyun"], {**REQUEST, "phone": "13912345678 / 021-59201234"}, language="en")

    assert response.status_code == 400
    assert response.get_json()[0]["description"] == (
        "Field phone contains more than one phone number: 13912345678 / 021-59201234. It takes one number; put "
        "any other number in description.")
    with runtime.transaction() as session:
        assert session.exec(select(Ticket)).all() == []


def test_post_unknown_service_code(client, seeded):
    response = _post(client, seeded["shequyun"], {**REQUEST, "service_code": "wedding"}, language="en")

    assert response.status_code == 400
    assert "service_code" in response.get_json()[0]["description"]


def test_post_without_key_401(client, seeded):
    response = client.post("/open311/v2/requests.json", data=REQUEST)

    assert response.status_code == 401
    assert response.get_json()[0]["code"] == 401


def test_post_without_write_scope_403(client, seeded, runtime):
    with runtime.transaction() as session:
        reader = tokens.create_token(session, "12345 reader", source="shequyun", scopes=["referrals:read"])

    response = _post(client, reader, REQUEST, language="en")

    assert response.status_code == 403
    assert "referrals:write" in response.get_json()[0]["description"]


def test_staff_token_rejected(client, seeded):
    response = _post(client, seeded["operator"], REQUEST)

    assert response.status_code == 403


def test_get_request_open_then_closed(client, seeded):
    consultation = {**REQUEST, "service_code": "consultation"}
    number = _post(client, seeded["shequyun"], consultation).get_json()[0]["service_request_id"]
    staff = {"Authorization": f"Bearer {seeded['operator']}"}

    opened = client.get(f"/open311/v2/requests/{number}.json?api_key={seeded['shequyun']}").get_json()[0]
    client.post(f"/api/v1/tickets/{number}/claim", headers=staff)
    client.post(f"/api/v1/tickets/{number}/transitions", json={"to": "resolved"}, headers=staff)
    closed = client.get(f"/open311/v2/requests/{number}.json?api_key={seeded['shequyun']}").get_json()[0]

    assert (opened["status"], opened["status_notes"]) == ("open", "待受理")
    assert (closed["status"], closed["status_notes"]) == ("closed", "已办结")
    assert closed["service_code"] == "consultation"
    assert closed["requested_datetime"].endswith("+08:00")
    assert closed["updated_datetime"].endswith("+08:00")
    assert closed["address"] == "白鹤镇", "the street address stays inside the hotline"


def test_other_source_request_not_found(client, seeded):
    number = _post(client, seeded["shequyun"], REQUEST).get_json()[0]["service_request_id"]

    response = client.get(f"/open311/v2/requests/{number}.json?api_key={seeded['community_worker']}")

    assert response.status_code == 404


def test_list_filters_by_status_and_id(client, seeded):
    with time_machine.travel(START, tick=False):
        transport = _post(client, seeded["shequyun"], REQUEST).get_json()[0]["service_request_id"]
        consult = _post(client, seeded["shequyun"], {**REQUEST, "service_code": "consultation",
                                                     "attribute[external_id]": "12345-20261207-002",
                                                     "attribute[town]": "练塘镇"}).get_json()[0]["service_request_id"]
        _post(client, seeded["community_worker"], {**REQUEST, "attribute[external_id]": "CW-1"})
        staff = {"Authorization": f"Bearer {seeded['operator']}"}
        client.post(f"/api/v1/tickets/{consult}/claim", headers=staff)
        client.post(f"/api/v1/tickets/{consult}/transitions", json={"to": "resolved"}, headers=staff)
        key = seeded["shequyun"]

        everything = client.get(f"/open311/v2/requests.json?api_key={key}").get_json()
        closed = client.get(f"/open311/v2/requests.json?api_key={key}&status=closed").get_json()
        by_code = client.get(f"/open311/v2/requests.json?api_key={key}&service_code=body_transport").get_json()
        by_id = client.get(f"/open311/v2/requests.json?api_key={key}&service_request_id={transport}").get_json()
        bad_status = client.get(f"/open311/v2/requests.json?api_key={key}&status=pending")

    assert sorted(item["service_request_id"] for item in everything) == sorted([transport, consult])
    assert [item["service_request_id"] for item in closed] == [consult]
    assert [item["service_request_id"] for item in by_code] == [transport]
    assert [item["service_request_id"] for item in by_id] == [transport]
    assert bad_status.status_code == 400
