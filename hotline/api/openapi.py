"""The OpenAPI 3.1 document at /api/openapi.json and its rendering (Redoc, served locally) at /api/docs.

The paths come from the app's URL map, so every route under /api and /open311 is in the document.
Routes described in OPERATIONS get their parameters, bodies and responses from there, with the body
schemas that the views validate against (hotline.api.schemas); any other route gets a generic entry
built from its URL rule and its view's docstring, so a new endpoint is listed before it is described.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, render_template
from werkzeug.routing import Rule

from hotline.api import open311, schemas
from hotline.api.auth import required_scope
from hotline.i18n import current_language
from hotline.row_ids import MAX_ROW_ID
from hotline.tokens import SCOPES
from hotline.vocabulary import CATEGORIES, PRIORITIES, SOURCES, STATUSES

bp = Blueprint("openapi", __name__, url_prefix="/api")

DOCUMENTED_PREFIXES = ("/api/", "/open311/")
# Ids are 32-bit integer columns on PostgreSQL.
CONVERTER_SCHEMAS = {"int": {"type": "integer", "minimum": 0, "maximum": MAX_ROW_ID}, "default": {"type": "string"}}
REF = "#/components/schemas/"


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_document(current_app))


@bp.get("/docs")
def docs():
    return render_template("api_docs.html", language=current_language())


def build_document(app: Flask) -> dict[str, Any]:
    """Describe every route under /api and /open311 of `app`."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if not rule.rule.startswith(DOCUMENTED_PREFIXES):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule), {})[method.lower()] = operation(app, rule, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hotline 59200496 API",
            "version": "1",
            "description": "青浦区殡仪馆白事服务专线 59200496: referrals in, tickets and their status out. "
                           "Instants are ISO 8601 with their offset; errors are "
                           '{"error": {"code", "message", "field"}} in the language of Accept-Language.',
        },
        "paths": paths,
        "components": {
            "schemas": {**schemas.COMPONENTS, **OPEN311_COMPONENTS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "API token. Scopes of source tokens: "
                                          + "; ".join(f"{scope}: {text}" for scope, text in SCOPES.items())},
                "api_key": {"type": "apiKey", "in": "query", "name": "api_key",
                            "description": "GeoReport's api_key: a source token (a POST may send it as a form field)."},
            },
        },
    }


def openapi_path(rule: Rule) -> str:
    """The rule in OpenAPI's notation: /tickets/<number> becomes /tickets/{number}."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def operation(app: Flask, rule: Rule, method: str) -> dict[str, Any]:
    described = OPERATIONS.get((method, rule.rule))
    if described is None:
        return _generic_operation(app, rule, method)
    spec = {"operationId": rule.endpoint.replace(".", "_") + "_" + method.lower(), **described}
    spec["parameters"] = _path_parameters(rule) + list(described.get("parameters", []))
    scope = required_scope(method, rule.rule)
    if scope is not None:
        spec["description"] = (spec.get("description", "") + f" A source token needs the scope `{scope}`.").strip()
    return spec


def _generic_operation(app: Flask, rule: Rule, method: str) -> dict[str, Any]:
    view = app.view_functions[rule.endpoint]
    summary = ((view.__doc__ or "").strip().splitlines() or [rule.endpoint])[0]
    return {
        "operationId": rule.endpoint.replace(".", "_") + "_" + method.lower(),
        "summary": summary,
        "tags": [_tag_of(rule.rule)],
        "parameters": _path_parameters(rule),
        "security": [{"bearer": []}],
        "responses": {"default": _json_response("Response; see docs/api.md.", {})},
    }


def _tag_of(path: str) -> str:
    parts = path.strip("/").split("/")
    return parts[2] if len(parts) > 2 and parts[0] == "api" else parts[0]


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    parameters = []
    for converter, _arguments, name in _parse(rule):
        schema = CONVERTER_SCHEMAS.get(converter, CONVERTER_SCHEMAS["default"])
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _parse(rule: Rule):
    for converter, arguments, name in re.findall(r"<(?:([^:<>(]+)(?:\(([^)]*)\))?:)?([^<>]+)>", rule.rule):
        yield converter or "default", arguments, name


# --- described operations ---------------------------------------------------------------------------


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


ERROR = _json_response("Error, in the request's language.", _ref("Error"))
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
TOO_MANY = {**_json_response("Rate limit reached; see Retry-After.", _ref("Error")), "headers": RETRY_AFTER}
BEARER = [{"bearer": []}]


def _errors(*statuses: int, public: bool = False) -> dict[str, Any]:
    """Error responses: 401 and 403 always, the listed ones, 429 on public endpoints, and a default."""
    responses = {str(status): ERROR for status in (401, 403, *statuses)}
    if public:
        responses["429"] = TOO_MANY
    responses["default"] = ERROR
    return responses


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _inline_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


REASON = {"type": "string", "minLength": 1, "maxLength": 300}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
    _query("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000, "default": 0}),
]
TICKET_FILTERS = [
    _query("status", {"enum": [*STATUSES, "open"]}, "A status, or open for every open status."),
    _query("source", {"enum": list(SOURCES)}),
    _query("category", {"enum": list(CATEGORIES)}),
    _query("priority", {"enum": list(PRIORITIES)}),
    _query("town", {"type": "string"}, "Town name or statistical code."),
    _query("external_id", {"type": "string"}),
    _query("call_sid", {"type": "string"}),
]
TICKET_RESPONSE = _json_response("The ticket.", _ref("Ticket"))
DISPATCH_BY_HAND = ("Actions on one ticket run one at a time. With expected_dispatch_state, the action is taken only "
                    "if the ticket's newest offer is still the one the caller read; otherwise the response is 409 "
                    "dispatch_changed, naming the newest offer and who changed it, and nothing changes.")
TICKET_PAGE = _json_response("A page of tickets in queue order.", _ref("TicketPage"))

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/referrals"): {
        "summary": "File a referral",
        "description": "Files a referral under the token's source. The same external_id again returns the "
                       "same ticket with 200, and a resend with changed content is recorded on the ticket.",
        "tags": ["referrals"], "security": BEARER, "requestBody": _body("Referral"),
        "responses": {"201": TICKET_RESPONSE, "200": TICKET_RESPONSE, **_errors(400, 413, 415, 422, public=True)},
    },
    ("GET", "/api/v1/referrals/<path:external_id>"): {
        "summary": "Read one of the source's referrals",
        "description": "The ticket of a referral filed under the token's source, with its SLA clocks and status "
                       "changes; the resident's phone is masked.",
        "tags": ["referrals"], "security": BEARER,
        "responses": {"200": _json_response("The referral's ticket.", _ref("ReferralStatus")),
                      **_errors(404, public=True)},
    },
    ("PUT", "/api/v1/webhook"): {
        "summary": "Register or replace the token's webhook",
        "description": "Each status change of the source's referrals is POSTed to the URL, signed; see "
                       "docs/webhooks.md. The URL must be https, and its host must resolve to public addresses "
                       "only (422 `invalid_url` or `unresolved_host` otherwise). The response carries a new "
                       "signing secret, shown only this once.",
        "tags": ["platform"], "security": BEARER, "requestBody": _body("WebhookRegistration"),
        "responses": {"201": _json_response("Registered.", _ref("Webhook")),
                      "200": _json_response("Replaced, with a new secret.", _ref("Webhook")),
                      **_errors(400, 413, 415, 422, public=True)},
    },
    ("GET", "/api/v1/webhook"): {
        "summary": "Read the token's webhook", "tags": ["platform"], "security": BEARER,
        "responses": {"200": _json_response("The webhook, without its secret.", _ref("Webhook")),
                      **_errors(404, public=True)},
    },
    ("DELETE", "/api/v1/webhook"): {
        "summary": "Remove the token's webhook", "tags": ["platform"], "security": BEARER,
        "responses": {"204": {"description": "Removed; pending deliveries fail."}, **_errors(404, public=True)},
    },
    ("GET", "/api/v1/webhook/deliveries"): {
        "summary": "List the webhook's deliveries, newest first", "tags": ["platform"], "security": BEARER,
        "parameters": [*PAGING, _query("state", {"enum": ["pending", "delivered", "failed"]})],
        "responses": {"200": _json_response("A page of deliveries.", _ref("WebhookDeliveryPage")),
                      **_errors(404, 422, public=True)},
    },
    ("GET", "/api/v1/tickets"): {
        "summary": "List tickets in queue order", "tags": ["tickets"], "security": BEARER,
        "parameters": [*TICKET_FILTERS, *PAGING],
        "responses": {"200": TICKET_PAGE, **_errors(422)},
    },
    ("GET", "/api/v1/tickets/<number>"): {
        "summary": "Read a ticket", "tags": ["tickets"], "security": BEARER,
        "responses": {"200": TICKET_RESPONSE, **_errors(404)},
    },
    ("POST", "/api/v1/tickets/<number>/claim"): {
        "summary": "Claim a ticket for the token's staff member", "tags": ["tickets"], "security": BEARER,
        "responses": {"200": TICKET_RESPONSE, **_errors(404, 409, 422)},
    },
    ("POST", "/api/v1/tickets/<number>/transitions"): {
        "summary": "Change a ticket's status", "tags": ["tickets"], "security": BEARER,
        "requestBody": _body("Transition"),
        "responses": {"200": TICKET_RESPONSE, **_errors(400, 404, 409, 413, 415, 422)},
    },
    ("POST", "/api/v1/tickets/<number>/offers"): {
        "summary": "Offer an agency-service ticket to an agency chosen by hand", "tags": ["dispatch"],
        "description": DISPATCH_BY_HAND,
        "security": BEARER,
        "requestBody": _inline_body({"agency_id": {"type": "integer"}, "reason": REASON,
                                     "expected_dispatch_state": schemas.EXPECTED_DISPATCH_STATE},
                                    ["agency_id", "reason"]),
        "responses": {"201": TICKET_RESPONSE, **_errors(400, 404, 409, 413, 415, 422)},
    },
    ("POST", "/api/v1/tickets/<number>/offers/<int:attempt>/cancel"): {
        "summary": "Withdraw a pending or accepted offer; the ticket goes to in_progress", "tags": ["dispatch"],
        "description": DISPATCH_BY_HAND,
        "security": BEARER,
        "requestBody": _inline_body({"reason": REASON, "expected_dispatch_state": schemas.EXPECTED_DISPATCH_STATE},
                                    ["reason"]),
        "responses": {"200": TICKET_RESPONSE, **_errors(400, 404, 409, 413, 415, 422)},
    },
    ("POST", "/api/v1/tickets/<number>/redispatch"): {
        "summary": "Withdraw any pending offer and dispatch again through the targets", "tags": ["dispatch"],
        "description": DISPATCH_BY_HAND,
        "security": BEARER,
        "requestBody": _inline_body({"reason": REASON, "include_tried": {"type": "boolean", "default": False},
                                     "expected_dispatch_state": schemas.EXPECTED_DISPATCH_STATE}, ["reason"]),
        "responses": {"200": TICKET_RESPONSE, **_errors(400, 404, 409, 413, 415, 422)},
    },
    ("GET", "/api/v1/agencies/fairness"): {
        "summary": "Offers, outcomes and acceptance times per agency over whole local days", "tags": ["agencies"],
        "security": BEARER,
        "parameters": [_query("since", {"type": "string", "pattern": "^[1-9][0-9]{0,2}d$", "default": "30d"},
                              "Number of days up to and including today, such as 30d (1–366).")],
        "responses": {"200": _json_response("The fairness report.", {"type": "object"}), **_errors(422)},
    },
    ("GET", "/api/v1/sla/overdue"): {
        "summary": "Open tickets with a breached SLA clock, the longest overdue first", "tags": ["sla"],
        "security": BEARER, "parameters": PAGING, "responses": {"200": TICKET_PAGE, **_errors(422)},
    },
    ("GET", "/api/v1/sla/at-risk"): {
        "summary": "Open tickets with an SLA warning, the soonest due first", "tags": ["sla"],
        "security": BEARER, "parameters": PAGING, "responses": {"200": TICKET_PAGE, **_errors(422)},
    },
    ("GET", "/api/openapi.json"): {
        "summary": "This document", "tags": ["docs"], "security": [],
        "responses": {"200": _json_response("OpenAPI 3.1 document.", {"type": "object"}), "429": TOO_MANY},
    },
    ("GET", "/api/docs"): {
        "summary": "This document, rendered", "tags": ["docs"], "security": [],
        "responses": {"200": {"description": "HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}},
                      "429": TOO_MANY},
    },
}

# --- Open311 ---------------------------------------------------------------------------------------

OPEN311_ERROR = {
    "type": "array",
    "title": "Open311Error",
    "items": {"type": "object", "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
              "required": ["code", "description"]},
}
OPEN311_SERVICE = {
    "type": "object",
    "title": "Open311Service",
    "properties": {name: {"type": kind} for name, kind in (
        ("service_code", "string"), ("service_name", "string"), ("description", "string"), ("metadata", "boolean"),
        ("type", "string"), ("keywords", "string"), ("group", "string"))},
    "required": ["service_code", "service_name", "metadata", "type"],
}
OPEN311_SERVICE_REQUEST = {
    "type": "object",
    "title": "Open311ServiceRequest",
    "properties": {
        "service_request_id": {"type": "string"},
        "status": {"enum": ["open", "closed"]},
        "status_notes": {"type": "string", "description": "The ticket's status in Chinese, such as 处理中."},
        "service_name": {"type": "string"},
        "service_code": {"enum": [service.code for service in open311.SERVICES]},
        "description": {"type": ["string", "null"]},
        "agency_responsible": {"type": "string"},
        "service_notice": {"type": ["string", "null"]},
        "requested_datetime": schemas.INSTANT,
        "updated_datetime": schemas.INSTANT,
        "expected_datetime": schemas.INSTANT,
        "address": {"type": ["string", "null"], "description": "Town and committee only."},
        **{name: {"type": "null"} for name in ("address_id", "zipcode", "lat", "long", "media_url")},
    },
    "required": ["service_request_id", "status", "status_notes", "service_code", "requested_datetime"],
}
OPEN311_COMPONENTS = {
    "Open311Error": OPEN311_ERROR,
    "Open311Service": OPEN311_SERVICE,
    "Open311ServiceRequest": OPEN311_SERVICE_REQUEST,
    "Open311Request": open311.OPEN311_REQUEST,
    "Open311Created": {
        "type": "array",
        "items": {"type": "object", "properties": {"service_request_id": {"type": "string"},
                                                   "service_notice": {"type": "string"},
                                                   "account_id": {"type": "null"}},
                  "required": ["service_request_id"]},
    },
}


def _open311_errors(*statuses: int) -> dict[str, Any]:
    error = _json_response("Errors in GeoReport's format.", {"anyOf": [_ref("Open311Error"), _ref("Error")]})
    responses = {str(status): error for status in statuses}
    responses["429"] = {**error, "headers": RETRY_AFTER}
    responses["default"] = error
    return responses


API_KEY = [{"api_key": []}]
SERVICE_REQUESTS = _json_response("Service requests.", {"type": "array", "items": _ref("Open311ServiceRequest")})
OPERATIONS.update({
    ("GET", "/open311/v2/services.json"): {
        "summary": "GeoReport service list", "tags": ["open311"], "security": [],
        "parameters": [_query("jurisdiction_id", {"type": "string"}, "Accepted and ignored.")],
        "responses": {"200": _json_response("Services.", {"type": "array", "items": _ref("Open311Service")}),
                      **_open311_errors()},
    },
    ("GET", "/open311/v2/services/<service_code>.json"): {
        "summary": "GeoReport service definition", "tags": ["open311"], "security": [],
        "parameters": [_query("jurisdiction_id", {"type": "string"}, "Accepted and ignored.")],
        "responses": {"200": _json_response("The service's attributes.", {"type": "object"}),
                      **_open311_errors(404)},
    },
    ("POST", "/open311/v2/requests.json"): {
        "summary": "File a GeoReport service request as a referral", "tags": ["open311"], "security": API_KEY,
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": _ref("Open311Request")}}},
        "responses": {"201": _json_response("Filed.", _ref("Open311Created")),
                      "200": _json_response("Filed before with this attribute[external_id].", _ref("Open311Created")),
                      **_open311_errors(400, 401, 403)},
    },
    ("GET", "/open311/v2/requests.json"): {
        "summary": "The source's GeoReport service requests", "tags": ["open311"], "security": API_KEY,
        "parameters": [
            _query("service_request_id", {"type": "string"}, "Comma-separated ids; the other filters are ignored."),
            _query("service_code", {"enum": [service.code for service in open311.SERVICES]}),
            _query("status", {"type": "string"}, "open, closed or open,closed."),
            _query("start_date", {"type": "string", "format": "date-time"}),
            _query("end_date", {"type": "string", "format": "date-time"}),
            _query("jurisdiction_id", {"type": "string"}, "Accepted and ignored."),
        ],
        "responses": {"200": SERVICE_REQUESTS, **_open311_errors(400, 401, 403)},
    },
    ("GET", "/open311/v2/requests/<service_request_id>.json"): {
        "summary": "One GeoReport service request", "tags": ["open311"], "security": API_KEY,
        "parameters": [_query("jurisdiction_id", {"type": "string"}, "Accepted and ignored.")],
        "responses": {"200": SERVICE_REQUESTS, **_open311_errors(400, 401, 403, 404)},
    },
})
