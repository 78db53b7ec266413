"""The OpenAPI document: every route in it, the body schemas the views validate with, Redoc served locally,
and a schemathesis run against the app that finds no server error and no response outside the document."""

from __future__ import annotations

import os
import re
from dataclasses import replace

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hotline import intake, tokens
from hotline.api import schemas
from hotline.api.openapi import openapi_path

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
PLATFORM_PREFIXES = ("/api/v1/referrals", "/api/v1/webhook", "/api/v1/kb")
# The suite draws the same examples on every run, so its result does not depend on chance. To search for new
# failures, run this file with HOTLINE_FUZZ_RANDOM=1 and more examples, such as HOTLINE_FUZZ_EXAMPLES=200.
FUZZ_EXAMPLES = int(os.environ.get("HOTLINE_FUZZ_EXAMPLES", "8"))
FUZZ_RANDOM = os.environ.get("HOTLINE_FUZZ_RANDOM", "") == "1"


def test_every_api_route_documented(app, client):
    document = client.get("/api/openapi.json").get_json()

    routes = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(("/api/", "/open311/"))]
    assert len(routes) > 20
    for rule in routes:
        path = openapi_path(rule)
        assert path in document["paths"], f"{rule.rule} is missing from /api/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in document["paths"][path], f"{method} {rule.rule} is missing"


def test_document_is_openapi_31(client):
    document = client.get("/api/openapi.json").get_json()

    assert document["openapi"] == "3.1.0"
    assert "/open311/v2/requests/{service_request_id}.json" in document["paths"]
    assert document["paths"]["/api/v1/tickets/{number}"]["get"]["parameters"][0]["in"] == "path"


def test_request_bodies_are_validation_schemas(client):
    document = client.get("/api/openapi.json").get_json()
    components = document["components"]["schemas"]

    referral_body = document["paths"]["/api/v1/referrals"]["post"]["requestBody"]["content"]["application/json"]
    transition_body = document["paths"]["/api/v1/tickets/{number}/transitions"]["post"]["requestBody"]
    assert referral_body["schema"] == {"$ref": "#/components/schemas/Referral"}
    assert components["Referral"] == schemas.REFERRAL
    assert transition_body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Transition"}
    assert components["Transition"] == schemas.TRANSITION
    assert schemas.REQUEST_BODIES["api_v1.create_referral"] is schemas.REFERRAL


def test_referral_schema_matches_intake_fields():
    properties = schemas.REFERRAL["properties"]

    assert set(properties) == set(intake.REFERRAL_FIELDS)
    assert set(properties["referrer"]["properties"]) == set(intake.REFERRER_FIELDS)
    assert set(properties["resident"]["properties"]) == set(intake.RESIDENT_FIELDS)
    assert set(properties["deceased"]["properties"]) == set(intake.DECEASED_FIELDS)


def test_scope_named_in_operation(client):
    document = client.get("/api/openapi.json").get_json()

    assert "referrals:write" in document["paths"]["/api/v1/referrals"]["post"]["description"]
    assert "referrals:read" in document["paths"]["/open311/v2/requests.json"]["get"]["description"]


def test_docs_page_uses_local_redoc(client):
    response = client.get("/api/docs")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources == ["/static/vendor/redoc/redoc.standalone.js"]
    assert 'spec-url="/api/openapi.json"' in page
    script = client.get(sources[0])
    assert script.status_code == 200
    assert b"ReDoc" in script.data[:2000] or len(script.data) > 500_000


@pytest.fixture
def fuzz_app(runtime, seeded, fake_dns):
    """The app with limits high enough for a fuzzing run, and tokens for every kind of caller.

    `fake_dns` resolves no name, so the webhook URLs the fuzzer makes up are never looked up outside.
    """
    from hotline import create_app

    runtime.settings = replace(runtime.settings, rate_limit_per_token="100000/minute",
                               rate_limit_per_ip="100000/minute")
    with runtime.transaction() as session:
        platform = tokens.create_token(session, "fuzz platform", source="shequyun", scopes=list(tokens.SCOPES))
        admin = tokens.create_token(session, "fuzz admin", role="admin")
    application = create_app(runtime)
    application.config["TESTING"] = True
    return application, {"platform": platform, "staff": seeded["supervisor"], "admin": admin}


def test_schemathesis_finds_no_violations(fuzz_app):
    application, keys = fuzz_app
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)
    failures: list[str] = []
    calls: list[str] = []
    operations = set()

    for result in schema.get_all_operations():
        operation = result.ok()
        operations.add(f"{operation.method.upper()} {operation.path}")
        _fuzz(operation, keys, failures, calls)

    assert failures == []
    assert sorted(operations - set(calls)) == [], "every operation was called"
    assert len(calls) >= 100


def _fuzz(operation, keys, failures, calls) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=FUZZ_EXAMPLES, derandomize=not FUZZ_RANDOM, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        headers = {}
        if operation.path.startswith("/open311/"):
            case.query = {**(case.query or {}), "api_key": keys["platform"]}
        elif operation.path.startswith(PLATFORM_PREFIXES):
            headers["Authorization"] = f"Bearer {keys['platform']}"
        else:
            headers["Authorization"] = f"Bearer {keys['admin']}"
        calls.append(f"{operation.method.upper()} {operation.path}")
        try:
            case.call_and_validate(headers=headers, checks=CHECKS)
        except Exception as error:  # noqa: BLE001 - every failure is collected and reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(error)[:600]}")
            raise

    try:
        run()
    except Exception:  # noqa: BLE001 - the failure is in `failures` already
        pass
