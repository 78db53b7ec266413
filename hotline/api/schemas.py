"""JSON Schemas of the API's request bodies and responses, used both to validate and to document.

Request bodies are checked against Draft 2020-12 before a view runs, and the OpenAPI document
(hotline.api.openapi) embeds the same dictionaries. A schema error becomes the InputError the
hand-written checks raised before, with the same code, field and message, so clients see no
difference. The domain's checks (phone numbers, towns, status machine) still run after the schema.

A body first goes through a check that `fastjsonschema` compiles from the schema, which accepts a
valid body in a few microseconds. Only a body it rejects goes through `jsonschema`, which lists every
error so that the first one in property order becomes the InputError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from hotline.api.bodies import json_object
from hotline.validation import N_, InputError, required, unknown_field, unknown_value, wrong_type
from hotline.vocabulary import (
    CATEGORIES,
    DEATH_PLACES,
    FLAGS,
    NEEDS,
    OFFER_STATES,
    PRIORITIES,
    REFERRAL_CATEGORIES,
    SOURCES,
    STATUSES,
    TRANSITIONS,
)

# Statuses an operator may ask for; dispatch sets dispatching and dispatched itself.
OPERATOR_STATUSES = sorted({status for targets in TRANSITIONS.values() for status in targets})


def optional_text(max_length: int, description: str = "") -> dict[str, Any]:
    """An optional string; null or blank counts as absent."""
    schema: dict[str, Any] = {"type": ["string", "null"], "maxLength": max_length}
    if description:
        schema["description"] = description
    return schema


def required_text(max_length: int, description: str = "") -> dict[str, Any]:
    """A required string with at least one non-blank character."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "pattern": r"\S"}
    if description:
        schema["description"] = description
    return schema


def _codes(accepted, description: str) -> dict[str, Any]:
    return {"type": ["array", "null"], "items": {"type": "string", "enum": list(accepted)},
            "description": description}


REFERRAL = {
    "type": "object",
    "title": "Referral",
    "description": "A referral filed under the token's source; the same external_id again returns the same ticket.",
    "properties": {
        "external_id": required_text(64, "The referrer's own id of the referral; unique per source."),
        "referrer": {
            "type": ["object", "null"],
            "properties": {
                "name": optional_text(64),
                "phone": optional_text(40, "One mobile or landline number; normalised to E.164."),
                "org": optional_text(100, "Organisation, such as a residents' committee."),
            },
            "additionalProperties": False,
        },
        "resident": {
            "type": "object",
            "properties": {
                "name": optional_text(64),
                "phone": required_text(40, "One mobile number, or one landline with its area code; an extension after "
                                           "转 is kept. Two numbers are rejected with multiple_phones."),
                "town": required_text(32, "Name or statistical code of a Qingpu town (街镇)."),
                "committee": optional_text(64, "Residents' or village committee (居委/村委)."),
                "address": optional_text(200),
            },
            "required": ["phone", "town"],
            "additionalProperties": False,
        },
        "category": {"type": "string", "enum": list(REFERRAL_CATEGORIES)},
        "needs": _codes(NEEDS, "What the family needs; body_transport makes the ticket P1."),
        "flags": _codes(FLAGS, "Vulnerability flags; each raises the priority one step."),
        "note": optional_text(2000),
        "deceased": {
            "type": ["object", "null"],
            "properties": {
                "died_at": {**optional_text(40, "ISO 8601 instant with its offset, from 1950 to 10 minutes after "
                                                   "the referral arrives."), "format": "date-time"},
                "place": {"type": ["string", "null"], "enum": [*DEATH_PLACES, None]},
            },
            "additionalProperties": False,
        },
        "chosen_agency": optional_text(100, "Name of the agency the family chose, if any."),
    },
    "required": ["external_id", "resident", "category"],
    "additionalProperties": False,
}

TRANSITION = {
    "type": "object",
    "title": "Transition",
    "properties": {
        "to": {"enum": OPERATOR_STATUSES, "description": "The status to move the ticket to."},
        "reason": {**optional_text(500), "description": "Why; required for waiting, cancelled and reopening."},
    },
    "required": ["to"],
}

WEBHOOK_REGISTRATION = {
    "type": "object",
    "title": "WebhookRegistration",
    "properties": {
        "url": {**required_text(500), "format": "uri",
                "description": "https URL that receives the status changes; its host must resolve to public "
                               "addresses only."},
    },
    "required": ["url"],
    "additionalProperties": False,
}

# Request body schema of each endpoint that takes a JSON body.
REQUEST_BODIES: dict[str, dict[str, Any]] = {
    "api_v1.create_referral": REFERRAL,
    "api_v1.transition_ticket": TRANSITION,
    "api_platform.register_webhook": WEBHOOK_REGISTRATION,
}

TYPE_NAMES = {"string": "string", "object": "object", "array": "list_of_strings"}
INVALID_FIELD = N_("Field %(field)s has an invalid value.")


def check_request_body(endpoint: str | None) -> None:
    """Validate the JSON body of a request to `endpoint` when the endpoint declares a body schema."""
    schema = REQUEST_BODIES.get(endpoint or "")
    if schema is not None:
        validate(schema, json_object())


def validate(schema: Mapping[str, Any], body: Any) -> None:
    """Raise the InputError of the first schema error in `schema`'s property order, if there is one."""
    if _passes_compiled_check(schema, body):
        return

    errors = list(Draft202012Validator(schema).iter_errors(body))
    if errors:
        first = min(errors, key=lambda error: _order(schema, error))
        raise _input_error(schema, first)


# Compiled checks by id() of their schema. Each entry keeps a reference to the schema, so no other dictionary
# can get the same id while the entry exists.
# NOTE: a schema changed after its first check keeps the old compiled check. The schemas are module constants.
_COMPILED_CHECKS: dict[int, tuple[Mapping[str, Any], Callable[[Any], Any]]] = {}
# fastjsonschema 2.22 implements drafts 04, 06 and 07 (its module documentation). The keywords of the
# request schemas (type, properties, required, additionalProperties, items, enum, maxLength, pattern) mean the
# same in draft-07 and Draft 2020-12, and tests/test_schemas_compiled.py fails when a schema uses another keyword.
COMPILED_DRAFT = "http://json-schema.org/draft-07/schema#"


def _passes_compiled_check(schema: Mapping[str, Any], body: Any) -> bool:
    """Return whether the compiled check accepts `body`.

    tests/test_schemas_compiled.py checks that it accepts the same bodies as jsonschema, so a body it accepts
    has no schema error to report.
    """
    try:
        _compiled_check(schema)(body)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _compiled_check(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    entry = _COMPILED_CHECKS.get(id(schema))
    if entry is None:
        entry = (schema, compile_check(schema))
        _COMPILED_CHECKS[id(schema)] = entry
    return entry[1]


def compile_check(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    """Compile `schema` into a function that raises fastjsonschema.JsonSchemaValueException on an invalid body.

    jsonschema here runs without a format checker, so `format` is only an annotation, and the compiled
    check must not assert it either (use_formats=False). use_default=False keeps the check from writing
    `default` values into the body.
    """
    definition = {**schema, "$schema": COMPILED_DRAFT}
    return fastjsonschema.compile(definition, use_default=False, use_formats=False, detailed_exceptions=False)


def _order(schema: Mapping[str, Any], error: ValidationError) -> tuple[int, ...]:
    """Sort key of an error: unknown fields first, then the position of each field along its path."""
    key = []
    node = schema
    for part in error.absolute_path:
        if isinstance(part, int):
            key.append(part)
            node = node.get("items", {})
        else:
            names = list(node.get("properties", {}))
            key.append(names.index(part) if part in names else len(names))
            node = node.get("properties", {}).get(part, {})
    if error.validator == "additionalProperties":
        key.append(-1)
    elif error.validator == "required":
        names = list(node.get("properties", {}))
        key.append(min(names.index(name) for name in _missing(error)))
    return tuple(key)


def _input_error(schema: Mapping[str, Any], error: ValidationError) -> InputError:
    names = [part for part in error.absolute_path if isinstance(part, str)]
    field = ".".join(names)
    prefix = field + "." if field else ""
    parent_required = _required_at(schema, names[:-1]) if names else ()
    is_required = bool(names) and names[-1] in parent_required

    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = next(key for key in error.instance if key not in known)
        return unknown_field(prefix, str(extra), known)
    if error.validator == "required":
        return required(prefix + _missing(error)[0])
    if error.instance is None and is_required:
        return required(field)
    if error.validator == "type":
        in_list = bool(error.absolute_path) and isinstance(error.absolute_path[-1], int)
        expected = "array" if in_list else _first_type(error.validator_value)
        return wrong_type(field, TYPE_NAMES.get(expected, "string"))
    if error.validator == "enum":
        accepted = [str(value) for value in error.validator_value if value is not None]
        return unknown_value(field, error.instance, accepted)
    if error.validator == "maxLength":
        return InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."), field=field,
                          limit=error.validator_value)
    if error.validator in ("minLength", "pattern"):
        return required(field)
    return InputError("invalid_value", INVALID_FIELD, field=field)


def _missing(error: ValidationError) -> list[str]:
    return [name for name in error.validator_value if name not in error.instance]


def _required_at(schema: Mapping[str, Any], names: list[str]) -> tuple[str, ...]:
    node = schema
    for name in names:
        node = node.get("properties", {}).get(name, {})
    return tuple(node.get("required", ()))


def _first_type(value: Any) -> str:
    types = [value] if isinstance(value, str) else [kind for kind in value if kind != "null"]
    return types[0] if types else "string"


# The ticket's newest offer as ATTEMPT:STATE, or "none"; hotline.dispatch.state checks the same form.
DISPATCH_STATE_PATTERN = rf"^(none|[1-9][0-9]{{0,8}}:({'|'.join(OFFER_STATES)}))$"
EXPECTED_DISPATCH_STATE = {
    "type": ["string", "null"],
    "pattern": DISPATCH_STATE_PATTERN,
    "description": "The ticket's dispatch_state as the caller read it, such as 2:pending. When the ticket's newest "
                   "offer has changed since, the response is 409 dispatch_changed and nothing changes. Absent or "
                   "null: the action is not checked against a state.",
}

# --- responses --------------------------------------------------------------------------------------

NULLABLE_STRING = {"type": ["string", "null"]}
INSTANT = {"type": ["string", "null"], "format": "date-time",
           "description": "ISO 8601 in Asia/Shanghai with its offset, such as 2026-12-07T08:00:00+08:00."}
STRING_LIST = {"type": "array", "items": {"type": "string"}}

ERROR = {
    "type": "object",
    "title": "Error",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code, such as invalid_phone."},
                "message": {"type": "string", "description": "In the request's language (Accept-Language)."},
                "field": {**NULLABLE_STRING, "description": "Dotted path of the field at fault, if one is."},
            },
            "required": ["code", "message", "field"],
        },
    },
    "required": ["error"],
}

SLA_CLOCK = {
    "type": "object",
    "title": "SlaClock",
    "properties": {
        "target": {"type": "string"},
        "owner": {"type": "string"},
        "policy": {"type": "string"},
        "calendar": {"type": "string"},
        "due_at": INSTANT,
        "warn_at": INSTANT,
        "state": {"type": "string", "enum": ["running", "paused", "met", "breached", "cancelled"]},
        "breached_at": INSTANT,
        "paused_seconds": {"type": "integer"},
        "provisional": {"type": "boolean"},
        "started_at": INSTANT,
    },
    "required": ["target", "due_at", "state", "breached_at"],
}

TICKET_SUMMARY = {
    "type": "object",
    "title": "TicketSummary",
    "properties": {
        "number": {"type": "string", "description": "QP-YYYYMMDD-NNNN."},
        "status": {"enum": list(STATUSES)},
        "status_label": {"type": "string"},
        "priority": {"enum": list(PRIORITIES)},
        "queue_rank": {"type": "integer"},
        "priority_reasons": {"type": "array", "items": NULLABLE_STRING},
        "category": {"enum": list(CATEGORIES)},
        "category_label": {"type": "string"},
        "channel": {"type": "string"},
        "source": {"enum": list(SOURCES)},
        "needs": STRING_LIST,
        "flags": STRING_LIST,
        "tags": STRING_LIST,
        "town": NULLABLE_STRING,
        "town_code": NULLABLE_STRING,
        "committee": NULLABLE_STRING,
        "caller_phone": {**NULLABLE_STRING, "description": "E.164 for staff tokens, masked for others."},
        "caller_phone_ext": NULLABLE_STRING,
        "external_id": NULLABLE_STRING,
        "due_at": INSTANT,
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "assigned_to_id": {"type": ["integer", "null"]},
        "agency_id": {"type": ["integer", "null"]},
        "rule_set_version": NULLABLE_STRING,
    },
    "required": ["number", "status", "priority", "priority_reasons", "category", "channel", "source", "needs",
                 "flags", "town", "committee", "caller_phone", "external_id", "created_at"],
}

TICKET = {
    "title": "Ticket",
    "allOf": [{"$ref": "#/components/schemas/TicketSummary"}],
    "type": "object",
    "properties": {
        "caller_name": NULLABLE_STRING,
        "address": NULLABLE_STRING,
        "note": NULLABLE_STRING,
        "deceased": {"type": ["object", "null"]},
        "rule_trace": {"type": "array"},
        "rule_trace_text": STRING_LIST,
        "call_sids": STRING_LIST,
        "sla": {"type": "array", "items": {"$ref": "#/components/schemas/SlaClock"}},
        "offers": {"type": "array", "items": {"type": "object"}},
        "dispatch_state": {"type": "string", "pattern": DISPATCH_STATE_PATTERN,
                           "description": "The attempt and state of the newest offer, such as 2:pending, or none. "
                                          "Send it back as expected_dispatch_state with a dispatch action."},
        "events": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["call_sids", "sla", "offers", "dispatch_state", "events"],
}


def page_of(item_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": item_ref}},
            "next": {"type": ["string", "null"], "description": "URL of the next page, or null on the last."},
        },
        "required": ["items", "next"],
    }


STATUS_CHANGE = {
    "type": "object",
    "title": "StatusChange",
    "properties": {
        "at": INSTANT,
        "from": {"type": ["string", "null"]},
        "to": {"enum": list(STATUSES)},
        "status_label": {"type": "string"},
    },
    "required": ["at", "from", "to", "status_label"],
}

REFERRAL_STATUS = {
    "title": "ReferralStatus",
    "allOf": [{"$ref": "#/components/schemas/TicketSummary"}],
    "type": "object",
    "properties": {
        "status_words": {"type": "string", "description": "The status in plain words, as a referrer reads it."},
        "resolved_at": INSTANT,
        "sla": {"type": "array", "items": {"$ref": "#/components/schemas/SlaClock"}},
        "history": {"type": "array", "items": {"$ref": "#/components/schemas/StatusChange"}},
    },
    "required": ["status_words", "resolved_at", "sla", "history"],
}

WEBHOOK = {
    "type": "object",
    "title": "Webhook",
    "properties": {
        "url": {"type": "string"},
        "source": {"enum": list(SOURCES)},
        "created_at": INSTANT,
        "updated_at": INSTANT,
        "secret": {"type": "string", "description": "Signing secret; returned only by the registration."},
    },
    "required": ["url", "source", "created_at", "updated_at"],
}

WEBHOOK_DELIVERY = {
    "type": "object",
    "title": "WebhookDelivery",
    "properties": {
        "id": {"type": "integer"},
        "ticket_number": NULLABLE_STRING,
        "state": {"enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer"},
        "created_at": INSTANT,
        "delivered_at": INSTANT,
        "next_attempt_at": INSTANT,
        "last_error": NULLABLE_STRING,
        "body": {"type": "object", "description": "The JSON that was, or will be, POSTed."},
    },
    "required": ["id", "state", "attempts", "created_at", "delivered_at", "next_attempt_at", "last_error", "body"],
}

COMPONENTS = {
    "Error": ERROR,
    "SlaClock": SLA_CLOCK,
    "TicketSummary": TICKET_SUMMARY,
    "Ticket": TICKET,
    "TicketPage": page_of("#/components/schemas/TicketSummary"),
    "Referral": REFERRAL,
    "Transition": TRANSITION,
    "StatusChange": STATUS_CHANGE,
    "ReferralStatus": REFERRAL_STATUS,
    "WebhookRegistration": WEBHOOK_REGISTRATION,
    "Webhook": WEBHOOK,
    "WebhookDelivery": WEBHOOK_DELIVERY,
    "WebhookDeliveryPage": page_of("#/components/schemas/WebhookDelivery"),
}
