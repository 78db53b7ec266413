"""The compiled schema checks accept exactly the bodies jsonschema accepts, so validate() raises the same errors."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from test_referrals_api import REFERRAL

from hotline.api import schemas
from hotline.api.open311 import OPEN311_REQUEST
from hotline.validation import InputError

SCHEMAS = {**schemas.REQUEST_BODIES, "open311.create_request": OPEN311_REQUEST}
# Keywords whose meaning the compiled check (fastjsonschema, draft-07) and jsonschema (Draft 2020-12) were
# checked to share, with `format` asserted by neither. A schema with another keyword fails
# test_schemas_use_known_keywords until the variations below cover it.
KNOWN_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "enum", "maxLength", "pattern",
                  "format", "title", "description"}

# Strings around the `\S` pattern: Python's re treats U+001C..U+001F, U+0085, U+00A0 and U+3000 as
# whitespace but not U+FEFF or U+200B, and both validators must draw that line in the same place.
BLANKS = ["", " ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000",
          "\ufeff", "\u200b", "\u180e", " \u3000 "]
SCALARS = [None, True, False, 0, 1, -1, 2.5, 10**20, "x", " x ", "x\n", "长", "\U00020000", "\ud800", "null", "true",
           "0", *BLANKS]
CONTAINERS = [[], {}, ["x"], [None], [1], [[]], {"x": 1}, {"": None}]

# Field changes that tests/test_referrals_api.py sends, as (dotted path, value).
REFERRAL_CHANGES = [
    ("resident.phone", "12345"), ("referrer.phone", "not a number"), ("resident.town", "浦东新区"),
    ("category", "wedding"), ("needs", ["fireworks"]), ("flags", ["vip"]), ("needs", "body_transport"),
    ("external_id", ""), ("source", "shequyun"), ("resident.town", None), ("note", "长" * 2001),
    ("deceased", {"died_at": "2026-12-07 08:00"}), ("deceased", {"place": "路边"}), ("external_id", 5),
    ("resident", "x"), ("needs", False), ("flags", {}), ("deceased", {"died_at": "yesterday"}),
]
VALID_BODIES = {
    "api_v1.create_referral": [
        REFERRAL,
        {"external_id": "x", "resident": {"phone": "1", "town": "练塘镇"}, "category": "agency_service"},
        {**REFERRAL, "referrer": None, "needs": None, "flags": None, "note": None, "chosen_agency": None,
         "deceased": {"died_at": "2026-12-07T08:00:00+08:00", "place": None}},
        {**REFERRAL, "deceased": {"died_at": None, "place": "hospital"}, "needs": ["body_transport", "ash_storage"]},
    ],
    "api_v1.transition_ticket": [{"to": "resolved"}, {"to": "waiting", "reason": "家属外出"}, {"to": "closed", "x": 1}],
    "api_platform.register_webhook": [{"url": "https://example.cn/hook"}],
    "open311.create_request": [
        {"service_code": "complaint", "phone": "13912345678", "attribute[town]": "盈浦街道",
         "attribute[flags][]": ["low_income", "disabled"]},
    ],
}


def test_schemas_use_known_keywords():
    for endpoint, schema in SCHEMAS.items():
        for node in _nodes(schema):
            unknown = set(node) - KNOWN_KEYWORDS
            assert not unknown, f"{endpoint}: add variations for {sorted(unknown)}"


def test_jsonschema_ignores_format():
    referral = {**REFERRAL, "deceased": {"died_at": "yesterday"}}
    webhook = {"url": "not a uri"}

    assert Draft202012Validator(schemas.REFERRAL).is_valid(referral)
    assert schemas._passes_compiled_check(schemas.REFERRAL, referral)
    assert Draft202012Validator(schemas.WEBHOOK_REGISTRATION).is_valid(webhook)
    assert schemas._passes_compiled_check(schemas.WEBHOOK_REGISTRATION, webhook)


@pytest.mark.parametrize("endpoint", sorted(VALID_BODIES))
def test_valid_bodies_pass_both(endpoint):
    schema = SCHEMAS[endpoint]

    for body in VALID_BODIES[endpoint]:
        assert Draft202012Validator(schema).is_valid(body), body
        assert schemas._passes_compiled_check(schema, body), body


def test_referral_test_changes_agree():
    for path, value in REFERRAL_CHANGES:
        body = _changed(REFERRAL, path, value)
        _assert_agree(schemas.REFERRAL, body)


@pytest.mark.parametrize("endpoint", sorted(SCHEMAS))
def test_generated_variations_agree(endpoint):
    schema = SCHEMAS[endpoint]
    bodies = list(_variations(schema))
    assert len(bodies) > 50

    accepted = 0
    for body in bodies:
        accepted += _assert_agree(schema, body)
    assert 0 < accepted < len(bodies), "the variations hold both valid and invalid bodies"


@pytest.mark.parametrize("endpoint", sorted(SCHEMAS))
def test_random_bodies_agree(endpoint):
    schema = SCHEMAS[endpoint]

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(body=_strategy(schema))
    def run(body):
        _assert_agree(schema, body)

    run()


@pytest.mark.parametrize("endpoint", sorted(SCHEMAS))
def test_validate_raises_same_error_as_jsonschema(endpoint, monkeypatch):
    schema = SCHEMAS[endpoint]
    bodies = list(_variations(schema))

    fast = [_outcome(schema, body) for body in bodies]
    monkeypatch.setattr(schemas, "_passes_compiled_check", lambda schema, body: False)
    slow = [_outcome(schema, body) for body in bodies]

    assert fast == slow


def test_check_compiled_once():
    first = schemas._compiled_check(schemas.REFERRAL)

    assert schemas._compiled_check(schemas.REFERRAL) is first
    assert schemas._compiled_check(copy.deepcopy(schemas.REFERRAL)) is not first


def _assert_agree(schema: Mapping[str, Any], body: Any) -> bool:
    expected = Draft202012Validator(schema).is_valid(body)
    assert schemas._passes_compiled_check(schema, body) == expected, body
    return expected


def _outcome(schema: Mapping[str, Any], body: Any) -> tuple | None:
    try:
        schemas.validate(schema, body)
    except InputError as error:
        return error.code, error.status, error.field, str(error)
    return None


def _nodes(schema: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield schema
    for child in schema.get("properties", {}).values():
        yield from _nodes(child)
    if "items" in schema:
        yield from _nodes(schema["items"])


def _changed(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    target = changed
    for parent in parents:
        target = target[parent]
    target[leaf] = value
    return changed


# --- bodies drawn from a schema ---------------------------------------------------------------------


def _valid(node: Mapping[str, Any]) -> Any:
    """A value that `node` accepts, with every property of an object filled in."""
    if "enum" in node:
        return next(value for value in node["enum"] if value is not None)
    types = [node["type"]] if isinstance(node.get("type"), str) else node.get("type", ["string"])
    if "object" in types:
        return {name: _valid(child) for name, child in node.get("properties", {}).items()}
    if "array" in types:
        return [_valid(node.get("items", {}))]
    return "x"


def _values(node: Mapping[str, Any]) -> list[Any]:
    """Values to put where `node` applies: scalars and containers of every type, and the node's edge cases."""
    values = [*SCALARS, *CONTAINERS]
    if "maxLength" in node:
        limit = node["maxLength"]
        for character in ("a", "长", "\U00020000"):
            values += [character * limit, character * (limit + 1)]
        values += [" " * limit, " " * (limit - 1) + "a"]
    for value in node.get("enum", []):
        values.append(value)
        if isinstance(value, str):
            values += [value.upper(), value + " ", " " + value, value[:-1], [value]]
    if "items" in node:
        values += [[item] for item in _values(node["items"])]
        values += [[_valid(node["items"]), item] for item in _values(node["items"])]
    return values


def _variations(node: Mapping[str, Any]) -> Iterator[Any]:
    """The node's valid value with one part changed at a time, at every depth, plus each value of _values()."""
    yield _valid(node)
    yield from _values(node)
    properties = node.get("properties", {})
    if not properties:
        return

    base = _valid(node)
    for name, child in properties.items():
        yield {key: value for key, value in base.items() if key != name}
        for value in _variations(child):
            yield {**base, name: value}
    minimal = {name: base[name] for name in node.get("required", [])}
    yield minimal
    yield {**minimal, "unknown": 1}
    yield {**base, "unknown": None}
    yield {"unknown": base}


def _strategy(node: Mapping[str, Any]) -> st.SearchStrategy:
    """Objects whose properties are each absent or drawn from _values(), at every depth, often several wrong."""
    values = st.sampled_from(_values(node))
    properties = node.get("properties", {})
    if not properties:
        return values

    required = set(node.get("required", []))
    children = {name: _strategy(child) for name, child in properties.items()}
    objects = st.fixed_dictionaries(
        {name: child for name, child in children.items() if name in required},
        optional={name: child for name, child in children.items() if name not in required},
    )
    extras = st.dictionaries(st.sampled_from(["unknown", "", *properties]), st.sampled_from(SCALARS), max_size=2)
    return st.one_of(objects, st.builds(lambda body, extra: {**extra, **body}, objects, extras), values)
