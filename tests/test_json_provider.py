"""jsonify() through OrjsonProvider writes the same bytes, or raises the same error, as Flask's DefaultJSONProvider."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider
from flask_babel import lazy_gettext
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from hotline.json_provider import OrjsonProvider


@dataclasses.dataclass
class Point:
    x: int
    label: str
    when: date


class Text(str):
    pass


class Count(int):
    pass


class Unknown:
    pass


TEXTS = [
    "", "盈浦街道95弄23号", "a\"b\\c/d", "\b\f\n\r\t", "\x00\x01\x1f\x7f\x80\x9f", "\u2028\u2029", "\ufeff",
    "\U0001f600 \U00020000", "</script><!--", "&<>'", "\u00e9\u0301", "".join(chr(code) for code in range(0x20)),
]
# Values of the types Flask's default function handles, and of the kinds orjson encodes on its own.
VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, 10**30, 0.0, -0.0, 0.5, 12.3, 100.0, 99.9, 1234567.8,
    *TEXTS, [], {}, (), [1, [2, [3]]], (1, "二"), {"a": {"b": [None]}}, {"中文键": "值", "": ""},
    datetime(2026, 12, 7, 8, 0, tzinfo=UTC), datetime(2026, 12, 7, 8, 0), date(2026, 12, 7),
    Decimal("1.10"), Decimal("-0"), uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Point(1, "标签", date(2026, 1, 2)), [Point(2, "", date(2026, 3, 4))], Markup("<b>粗体</b>"), Text("子类"),
    Count(7), {"nested": Text("x"), "count": Count(3)}, {1: "int key"}, {None: 1, True: 2, 1.5: 3},
    {"list": [Decimal("2"), uuid.UUID(int=1)]}, "\ud800", ["ok", "\udfff"],
]


def _app(provider_class: type[DefaultJSONProvider], debug: bool = False) -> Flask:
    """A Flask app with the JSON settings of hotline.create_app()."""
    app = Flask(__name__)
    app.debug = debug
    app.json = provider_class(app)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    return app


def _encode(app: Flask, *args, **kwargs):
    """Return jsonify()'s body bytes, Content-Type and Content-Length, or the type of the error it raised."""
    with app.test_request_context():
        try:
            response = jsonify(*args, **kwargs)
            return response.get_data(), response.headers["Content-Type"], response.headers["Content-Length"]
        except Exception as error:  # noqa: BLE001 - the error type is what the test compares
            return type(error)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_value_encoded_like_flask(value):
    expected = _encode(_app(DefaultJSONProvider), value)

    assert _encode(_app(OrjsonProvider), value) == expected


def test_args_and_kwargs_encoded_like_flask():
    fast, default = _app(OrjsonProvider), _app(DefaultJSONProvider)

    assert _encode(fast) == _encode(default)
    assert _encode(fast, 1, "二") == _encode(default, 1, "二")
    assert _encode(fast, a=1, b="二") == _encode(default, a=1, b="二")
    assert _encode(fast, 1, a=2) == _encode(default, 1, a=2)


def test_unknown_type_raises_type_error():
    assert _encode(_app(OrjsonProvider), {"a": Unknown()}) is TypeError
    assert _encode(_app(DefaultJSONProvider), {"a": Unknown()}) is TypeError


def test_time_raises_like_flask():
    assert _encode(_app(OrjsonProvider), time(8, 0)) == _encode(_app(DefaultJSONProvider), time(8, 0))


def test_lazy_string_encoded_like_flask():
    fast, default = _app(OrjsonProvider), _app(DefaultJSONProvider)

    with fast.app_context():
        fast_body = _encode(fast, {"label": lazy_gettext("Field %(field)s is required.", field="x")})
    with default.app_context():
        default_body = _encode(default, {"label": lazy_gettext("Field %(field)s is required.", field="x")})

    assert fast_body == default_body


def test_deep_nesting_encoded_like_flask():
    value: list = []
    for _ in range(300):
        value = [value]

    assert _encode(_app(OrjsonProvider), value) == _encode(_app(DefaultJSONProvider), value)


@pytest.mark.parametrize("value", [{"b": 1, "a": [2, {"d": None}]}, [], {}, "中文"], ids=repr)
def test_debug_mode_indented_like_flask(value):
    expected = _encode(_app(DefaultJSONProvider, debug=True), value)

    assert _encode(_app(OrjsonProvider, debug=True), value) == expected


def test_debug_mode_output_indented():
    body = _encode(_app(OrjsonProvider, debug=True), {"a": 1})[0]

    assert body == b'{\n  "a": 1\n}\n'


@pytest.mark.parametrize("setting", ["ensure_ascii", "sort_keys"])
def test_other_settings_encoded_like_flask(setting):
    fast, default = _app(OrjsonProvider), _app(DefaultJSONProvider)
    setattr(fast.json, setting, True)
    setattr(default.json, setting, True)
    value = {"b": "二", "a": 1}

    assert _encode(fast, value) == _encode(default, value)


def test_small_and_special_floats_differ():
    """The forms that the NOTE in OrjsonProvider describes: the same number, or null for NaN and Infinity."""
    fast, default = _app(OrjsonProvider), _app(DefaultJSONProvider)
    small = [1e-07, 1.2e-05, -9.99e-05]

    assert _encode(fast, small)[0] == b"[1e-7,0.000012,-0.0000999]\n"
    assert _encode(default, small)[0] == b"[1e-07,1.2e-05,-9.99e-05]\n"
    assert json.loads(_encode(fast, small)[0]) == small
    assert _encode(fast, [float("nan"), float("inf")])[0] == b"[null,null]\n"
    assert _encode(default, [float("nan"), float("inf")])[0] == b"[NaN,Infinity]\n"


def test_app_uses_orjson_provider(app):
    assert isinstance(app.json, OrjsonProvider)
    assert app.json.ensure_ascii is False
    assert app.json.sort_keys is False


def test_tojson_filter_unchanged(app):
    with app.app_context():
        rendered = app.jinja_env.from_string("{{ value|tojson }}").render(value={"b": "<二>", "a": 1})

    assert rendered == '{"a": 1, "b": "\\u003c二\\u003e"}'


# Floats as the app writes them: percentages and medians rounded to one decimal.
ROUNDED_FLOATS = st.floats(min_value=-1e9, max_value=1e9).map(lambda number: round(number, 1))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | ROUNDED_FLOATS | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=JSON_VALUES)
def test_random_values_encoded_like_flask(value):
    assert _encode(_app(OrjsonProvider), value) == _encode(_app(DefaultJSONProvider), value)
