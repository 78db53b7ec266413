"""Helpers for the staff-page tests: CSRF tokens, logging in, and tickets made through the referral API."""

from __future__ import annotations

import re

PASSWORD = "test-password"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client, path="/login") -> str:
    """The CSRF token of the client's session, read from a page's form."""
    response = client.get(path)
    match = CSRF_FIELD.search(response.get_data(as_text=True))
    assert match, f"no CSRF field on {path} (status {response.status_code})"
    return match.group(1)


def log_in(client, username, password=PASSWORD):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_token(client)})


def post_form(client, path, data=None):
    """POST a staff form with the session's CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, "/tickets/new")})


def refer(client, token, external_id, category="consultation", needs=(), flags=(), town="金泽镇",
          phone="13812345678", referrer=None, deceased=None) -> str:
    body = {"external_id": external_id, "category": category, "needs": list(needs), "flags": list(flags),
            "resident": {"name": "居民", "phone": phone, "town": town}}
    if referrer:
        body["referrer"] = referrer
    if deceased:
        body["deceased"] = deceased
    response = client.post("/api/v1/referrals", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["number"]
