"""JSON request bodies, read with errors that state what to fix."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from hotline.validation import N_, InputError

UTF8_NAMES = ("utf-8", "utf8")
# The WSGI environ key under which the parsed body is kept for the rest of the request.
BODY_KEY = "hotline.json_body"


def json_object() -> dict[str, Any]:
    """Parse the body as a JSON object in UTF-8, once per request; raise 415 or 400 saying what is wrong.

    JSON exchanged between systems is UTF-8 (RFC 8259, section 8.1), so another declared charset is a 415
    and bytes that are not UTF-8 are a 400, instead of text stored with replacement characters. A leading
    byte order mark is ignored, as the RFC allows. Deeply nested input raises RecursionError inside the
    json module and a number of more than 4300 digits raises ValueError, so both are caught.
    """
    cached = request.environ.get(BODY_KEY)
    if cached is not None:
        return cached

    if not request.is_json:
        raise InputError("unsupported_media_type",
                         N_("Request body must be JSON sent with Content-Type: application/json."), status=415)
    charset = request.mimetype_params.get("charset")
    if charset is not None and charset.strip().lower() not in UTF8_NAMES:
        raise InputError("unsupported_media_type", N_("Request body must be JSON in UTF-8, not %(charset)s."),
                         status=415, charset=charset)
    body = _parse(_decode(request.get_data(cache=True)))
    if not isinstance(body, dict):
        raise InputError("invalid_body", N_("Request body must be a JSON object."), status=400)
    request.environ[BODY_KEY] = body
    return body


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError("invalid_json", N_("Request body is not valid UTF-8: the byte at offset %(offset)s "
                                            "cannot be decoded."), status=400, offset=error.start) from None


def _parse(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object_with_unique_keys)
    except DuplicateKey as error:
        raise InputError("invalid_json", N_("Request body repeats the key %(key)s in one object; send each key "
                                            "once."), field=error.key, status=400, key=error.key) from None
    except json.JSONDecodeError as error:
        raise InputError("invalid_json", N_("Request body is not valid JSON: the error is at line %(line)s, "
                                            "column %(column)s."),
                         status=400, line=error.lineno, column=error.colno) from None
    except NonStandardConstant as error:
        raise InputError("invalid_json", N_("Request body is not valid JSON: %(constant)s is not a JSON value."),
                         status=400, constant=error.constant) from None
    except (ValueError, RecursionError):
        raise InputError("invalid_json", N_("Request body is not valid JSON: it is nested too deeply or holds "
                                            "a number with too many digits."), status=400) from None


class DuplicateKey(ValueError):
    """A key that appears twice in one JSON object. RFC 8259 leaves the meaning open, and parsers differ on it."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object_with_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) == len(pairs):
        return mapping

    seen = set()
    for key, _value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen.add(key)
    raise AssertionError("unreachable")


class NonStandardConstant(ValueError):
    """NaN, Infinity or -Infinity, which Python's json module reads but JSON (RFC 8259) does not allow."""

    def __init__(self, constant: str):
        super().__init__(constant)
        self.constant = constant


def _reject_constant(constant: str) -> Any:
    raise NonStandardConstant(constant)
