"""Reject requests carrying characters the databases cannot store: U+0000 (NUL) and unpaired surrogates.

PostgreSQL's text and jsonb types cannot hold U+0000, and neither PostgreSQL nor SQLite can store a string
with an unpaired UTF-16 surrogate (U+D800 to U+DFFF), which a JSON body can carry as an escape such as
\\ud800. Such a value made the database driver raise, and the caller got a 500. Every request is checked
before any view runs: a query parameter, a form field, a JSON string or object key, or the path. One that
carries such a character gets 400 `invalid_character` naming the field, with nothing written. API callers
get the JSON error (GeoReport's under /open311/), Twilio webhooks an empty TwiML document, and staff pages
get the 400 page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from hotline.api.errors import wants_json
from hotline.validation import N_, InputError

NUL = "\x00"
SURROGATE = re.compile("[\ud800-\udfff]")
# JSON carries U+0000 and surrogates only as escapes, because a raw NUL is invalid JSON and the body is
# decoded as strict UTF-8. An escape counts only when an odd number of backslashes precedes its `u`,
# since each pair is an escaped backslash.
JSON_SUSPECT_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F])")
NUL_MESSAGE = N_("Field %(field)s contains the NUL character (U+0000), which is not accepted; remove it and "
                 "send the request again.")
SURROGATE_MESSAGE = N_("Field %(field)s contains an unpaired surrogate (%(character)s), which is not a valid "
                       "character; check how the text was encoded and send the request again.")
MAX_FIELD_NAME_LENGTH = 64
# A field path deep in a nested body is cut to this length in the error.
MAX_FIELD_PATH_LENGTH = 200

log = logging.getLogger("hotline.api")


class UnstorableCharacter(InputError):
    """A request parameter that contains U+0000 or an unpaired surrogate; the response is a 400."""


def init_app(app: Flask) -> None:
    app.before_request(reject_unstorable_characters)


def reject_unstorable_characters() -> None:
    """Raise 400 for the first parameter whose name or value contains U+0000 or an unpaired surrogate."""
    found = _in_path() or _in_pairs(request.args) or _in_body()
    if found is None:
        return
    field, character = found
    if len(field) > MAX_FIELD_PATH_LENGTH:
        field = field[:MAX_FIELD_PATH_LENGTH] + "…"
    log.warning("Request: rejected %s %s, field %s contains U+%04X", request.method, request.path, field,
                ord(character))
    if not (wants_json() or request.path.startswith("/open311/")):
        raise BadRequest()
    if character == NUL:
        raise UnstorableCharacter("invalid_character", NUL_MESSAGE, field=field, status=400)
    raise UnstorableCharacter("invalid_character", SURROGATE_MESSAGE, field=field, status=400,
                              character=f"U+{ord(character):04X}")


def _in_path() -> tuple[str, str] | None:
    character = _unstorable(request.path)
    return ("path", character) if character else None


def _in_pairs(pairs) -> tuple[str, str] | None:
    for key, value in pairs.items(multi=True):
        for text in (key, value):
            character = _unstorable(text) if isinstance(text, str) else None
            if character:
                return _printable(key), character
    return None


def _in_body() -> tuple[str, str] | None:
    if request.is_json:
        return _in_json(request.get_data(cache=True))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _in_pairs(request.form)
    return None


def _in_json(data: bytes) -> tuple[str, str] | None:
    """Return the dotted path and the character of a JSON field that cannot be stored, or None.

    The regex keeps the common case cheap, and only a hit parses the body to find the field.
    """
    if not JSON_SUSPECT_ESCAPE.search(data):
        return None
    try:
        body = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        # The body is invalid JSON, and the view that parses it rejects it with its own message.
        return None
    return next(_unstorable_paths(body, ""), None)


def _unstorable_paths(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield the dotted path and character of each string or object key that cannot be stored.

    A top-level string is named `body`.
    """
    if isinstance(value, str):
        character = _unstorable(value)
        if character:
            yield path or "body", character
    elif isinstance(value, dict):
        for key, item in value.items():
            name = (path + "." if path else "") + _printable(key)
            character = _unstorable(key)
            if character:
                yield name, character
            yield from _unstorable_paths(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unstorable_paths(item, f"{path}[{index}]")


def _unstorable(text: str) -> str | None:
    """Return the first U+0000 or unpaired surrogate in `text`, or None."""
    if NUL in text:
        return NUL
    match = SURROGATE.search(text)
    return match.group() if match else None


def _printable(name: str) -> str:
    """Write a field name for an error message: escapes for what cannot be stored, cut to MAX_FIELD_NAME_LENGTH."""
    escaped = SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", name.replace(NUL, "\\u0000"))
    if len(escaped) > MAX_FIELD_NAME_LENGTH:
        return escaped[:MAX_FIELD_NAME_LENGTH] + "…"
    return escaped
