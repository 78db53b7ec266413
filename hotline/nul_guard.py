"""Reject requests that carry the NUL character (U+0000) in a query parameter, form field, JSON string or path.

PostgreSQL's text and jsonb types cannot hold U+0000, so psycopg raises DataError when one reaches a query,
which the caller would see as a 500. Every request is checked before any view runs, and one that carries
U+0000 gets 400 naming the parameter, with nothing written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from flask import Flask, request

from hotline.validation import N_, InputError

NUL = "\x00"
# A JSON string can carry U+0000 only as the escape \u0000, because a raw NUL is invalid JSON. The escape
# counts only when an odd number of backslashes precedes the `u`, since each pair is an escaped backslash.
JSON_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
NUL_MESSAGE = N_("Field %(field)s contains the NUL character (U+0000), which cannot be stored; remove it and "
                 "send the request again.")


def init_app(app: Flask) -> None:
    app.before_request(reject_nul_characters)


def reject_nul_characters() -> None:
    """Raise InputError (400) naming the first parameter whose name or value contains U+0000."""
    field = _nul_in_path() or _nul_in_pairs(request.args) or _nul_in_body()
    if field is not None:
        raise InputError("invalid_character", NUL_MESSAGE, field=field, status=400)


def _nul_in_path() -> str | None:
    return "path" if NUL in request.path else None


def _nul_in_pairs(pairs) -> str | None:
    for key, value in pairs.items(multi=True):
        if NUL in key:
            return key.replace(NUL, "\\u0000")
        if isinstance(value, str) and NUL in value:
            return key
    return None


def _nul_in_body() -> str | None:
    if request.is_json:
        return _nul_in_json(request.get_data(cache=True))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _nul_in_pairs(request.form)
    return None


def _nul_in_json(data: bytes) -> str | None:
    """Return the dotted path of a JSON field that contains U+0000, or None.

    The regex keeps the common case cheap, and only a hit parses the body to find the field.
    """
    if not JSON_NUL_ESCAPE.search(data):
        return None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        # The body is invalid JSON, and the view that parses it rejects it with its own message.
        return None
    return next(_nul_paths(body, ""), None)


def _nul_paths(value: Any, path: str) -> Iterator[str]:
    """Yield the dotted path of each string or object key that contains U+0000. A top-level string is `body`."""
    if isinstance(value, str) and NUL in value:
        yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                yield (path + "." if path else "") + key.replace(NUL, "\\u0000")
            yield from _nul_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}[{index}]")
