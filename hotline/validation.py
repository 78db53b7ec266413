"""Validation errors the domain raises and the API turns into 4xx JSON in the caller's language.

Messages are English templates marked with `N_` so Babel extracts them; the web layer translates
them with the request's locale, so the domain never imports Flask.
"""

from __future__ import annotations

import re
from typing import Any

# An unknown field's name is echoed in its error up to this length, so a huge key makes no huge error.
MAX_ECHOED_NAME_LENGTH = 64


def N_(template: str) -> str:  # noqa: N802 - the name Babel's extractor looks for
    return template


# C0 controls and DEL can break an SMS, a CSV export or a terminal, and bidirectional controls reorder the
# text an operator reads, so no text may contain them. Tabs and line breaks are accepted.
CONTROL_CHARACTER_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
CONTROL_CHARACTER_MESSAGE = N_("Field %(field)s contains the control character %(character)s, which is not "
                               "accepted; remove it and send the request again.")


class TemplatedError(Exception):
    """An error whose message is an N_-marked English `template` filled with `params`, for callers to translate."""

    def __init__(self, template: str, **params: Any):
        super().__init__(template % params if params else template)
        self.template = template
        self.params = params


class InputError(ValueError):
    """Bad input: nothing was changed. `status` is the HTTP status of the API response."""

    def __init__(self, code: str, template: str, field: str | None = None, status: int = 422, **params: Any):
        if field is not None:
            params = {"field": field, **params}
        super().__init__(template % params if params else template)
        self.code = code
        self.template = template
        self.field = field
        self.status = status
        self.params = params


def required(field: str) -> InputError:
    return InputError("required", N_("Field %(field)s is required."), field=field)


def unknown_field(prefix: str, name: str, accepted) -> InputError:
    """Return the error for an unknown field `name` under `prefix`, with the name cut to MAX_ECHOED_NAME_LENGTH."""
    if len(name) > MAX_ECHOED_NAME_LENGTH:
        name = name[:MAX_ECHOED_NAME_LENGTH] + "…"
    return InputError("unknown_field", N_("Unknown field %(field)s; accepted fields: %(accepted)s."),
                      field=prefix + name, accepted=", ".join(accepted))


def unknown_value(field: str, value: Any, accepted) -> InputError:
    return InputError(
        "invalid_value",
        N_("Unknown value %(value)s for %(field)s; accepted values: %(accepted)s."),
        field=field, value=repr(value), accepted=", ".join(accepted),
    )


def multiple_phones(field: str, value: str, other_field: str) -> InputError:
    """Build the error for a phone field that contains two numbers. `other_field` names the field for the others."""
    return InputError(
        "multiple_phones",
        N_("Field %(field)s contains more than one phone number: %(value)s. It takes one number; put any other "
           "number in %(other_field)s."),
        field=field, value=value, other_field=other_field,
    )


TYPE_MESSAGES = {
    "string": N_("Field %(field)s must be a string."),
    "object": N_("Field %(field)s must be a JSON object."),
    "list_of_strings": N_("Field %(field)s must be a list of strings."),
    "instant": N_("Field %(field)s must be an ISO 8601 instant with its offset, such as 2026-12-07T08:00:00+08:00."),
}


def wrong_type(field: str, expected: str) -> InputError:
    """Build the error for a value of the wrong type. `expected` is a key of TYPE_MESSAGES."""
    return InputError("invalid_type", TYPE_MESSAGES[expected], field=field)
