"""Reject requests carrying characters the databases cannot store, or that no text should contain.

PostgreSQL's text and jsonb types cannot hold U+0000, and neither PostgreSQL nor SQLite can store a string
with an unpaired UTF-16 surrogate (U+D800 to U+DFFF), which a JSON body can carry as an escape such as
\\ud800. Such a value made the database driver raise, and the caller got a 500. Such a request gets 400
`invalid_character`. The other control characters (hotline.validation.CONTROL_CHARACTER_IN_TEXT) can be
stored, but break SMS text, CSV exports and terminals or reorder what an operator reads, so a request with
one gets 422 `invalid_character`. Tabs and line breaks are accepted.

Every request is checked before any view runs: a query parameter, a form field, a JSON string or object
key, or the path. The error names the field and nothing is written. API callers get the JSON error
(GeoReport's under /open311/), Twilio webhooks an empty TwiML document, and staff pages the 400 page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

from flask import Flask, request

from hotline.api.errors import PageInputError, wants_json
from hotline.validation import CONTROL_CHARACTER_IN_TEXT, CONTROL_CHARACTER_MESSAGE, N_, InputError

NUL = "\x00"
SURROGATE = re.compile("[\ud800-\udfff]")
REJECTED_IN_NAME = re.compile(f"[\ud800-\udfff]|{CONTROL_CHARACTER_IN_TEXT.pattern}|[\t\n\r]")
# JSON carries U+0000, surrogates and the C0 controls only as escapes, because raw they are invalid JSON
# or not UTF-8. An escape counts only when its run of backslashes is odd, since each pair is an escaped
# backslash. The group contains the whole run, because a match starts at the run's first backslash.
JSON_ESCAPE_SUSPECT = re.compile(rb"(\\+)(?:[bf]|u(?:00[01]|007[fF]|[dD][89a-fA-F]|202[a-eA-E]|206[6-9]))")
# DEL and the bidirectional controls may also come raw, as their UTF-8 bytes.
RAW_SUSPECT = re.compile(rb"\x7f|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]")
NUL_MESSAGE = N_("Field %(field)s contains the NUL character (U+0000), which is not accepted; remove it and "
                 "send the request again.")
NOT_UTF8_MESSAGE = N_("Field %(field)s is not valid UTF-8 once its percent-escapes are decoded; send the form "
                      "or query in UTF-8.")
SURROGATE_MESSAGE = N_("Field %(field)s contains an unpaired surrogate (%(character)s), which is not a valid "
                       "character; check how the text was encoded and send the request again.")
MAX_FIELD_NAME_LENGTH = 64
# A field path deep in a nested body is cut to this length in the error.
MAX_FIELD_PATH_LENGTH = 200

log = logging.getLogger("hotline.api")


class UnstorableCharacter(InputError):
    """A request parameter that is not UTF-8 or contains a rejected character; a control character is a 422."""


def init_app(app: Flask) -> None:
    app.before_request(reject_unstorable_characters)


def reject_unstorable_characters() -> None:
    """Raise an error for the first parameter that is not UTF-8 or contains a character the guard rejects."""
    undecodable = _undecodable_pair(request.query_string) or _undecodable_form()
    if undecodable is not None:
        _reject(undecodable, "not UTF-8", NOT_UTF8_MESSAGE, 400)

    found = _in_path() or _in_pairs(request.args) or _in_body()
    if found is None:
        return
    field, character = found
    code_point = f"U+{ord(character):04X}"
    if character == NUL:
        _reject(field, code_point, NUL_MESSAGE, 400)
    if SURROGATE.match(character):
        _reject(field, code_point, SURROGATE_MESSAGE, 400, character=code_point)
    _reject(field, code_point, CONTROL_CHARACTER_MESSAGE, 422, character=code_point)


def _reject(field: str, problem: str, template: str, status: int, **params: str) -> NoReturn:
    """Log the rejection and raise its error: JSON for API callers, a 400 page with the same message for pages."""
    if len(field) > MAX_FIELD_PATH_LENGTH:
        field = field[:MAX_FIELD_PATH_LENGTH] + "…"
    log.warning("Request: rejected %s %s, field %s: %s", request.method, request.path, field, problem)
    error = UnstorableCharacter("invalid_character", template, field=field, status=status, **params)
    if not (wants_json() or request.path.startswith("/open311/")):
        raise PageInputError(error)
    raise error


def _undecodable_form() -> str | None:
    if request.mimetype != "application/x-www-form-urlencoded":
        return None
    return _undecodable_pair(request.get_data(cache=True))


def _undecodable_pair(encoded: bytes) -> str | None:
    """Return the name of the first pair of a urlencoded text whose name or value is not UTF-8 once unquoted.

    Werkzeug keeps an escape it cannot decode as text, so "%FF" would be stored as those three characters.
    """
    for pair in encoded.split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                return _printable(unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace"))
    return None


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
    """Return the dotted path and the character of a JSON field the guard rejects, or None.

    Byte checks keep the common case cheap, and only a hit parses the body to find the field.
    """
    if not _suspect_json(data):
        return None
    try:
        body = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError):
        # The body is invalid JSON, and the view that parses it rejects it with its own message.
        return None
    return next(_unstorable_paths(body, ""), None)


def _suspect_json(data: bytes) -> bool:
    """Return whether the raw body may contain a character the guard rejects.

    A regex scan of a referral's body took about 17 µs. Looking first for the bytes that every hit starts
    with takes well under 1 µs, so a body without them skips the scans.
    """
    if b"\\" in data and any(len(match[1]) % 2 for match in JSON_ESCAPE_SUSPECT.finditer(data)):
        return True
    return (b"\x7f" in data or b"\xe2" in data) and RAW_SUSPECT.search(data) is not None


def _unstorable_paths(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield the dotted path and character of each string or object key the guard rejects.

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
    """Return the first U+0000 in `text`, else its first unpaired surrogate, else its first control character."""
    if NUL in text:
        return NUL
    match = SURROGATE.search(text) or CONTROL_CHARACTER_IN_TEXT.search(text)
    return match.group() if match else None


def _printable(name: str) -> str:
    """Write a field name for an error message: escapes for what cannot be stored, cut to MAX_FIELD_NAME_LENGTH."""
    escaped = REJECTED_IN_NAME.sub(lambda match: f"\\u{ord(match.group()):04x}", name)
    if len(escaped) > MAX_FIELD_NAME_LENGTH:
        return escaped[:MAX_FIELD_NAME_LENGTH] + "…"
    return escaped
