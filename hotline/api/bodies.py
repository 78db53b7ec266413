"""JSON request bodies, read with errors that state what to fix."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from hotline.validation import N_, InputError


def json_object() -> dict[str, Any]:
    """Parse the body as a JSON object; raise 415 for another media type and 400 for bad JSON.

    Deeply nested input raises RecursionError inside the json module, so it is caught with ValueError.
    """
    if not request.is_json:
        raise InputError("unsupported_media_type",
                         N_("Request body must be JSON sent with Content-Type: application/json."), status=415)
    text = request.get_data(cache=True, as_text=True)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError("invalid_json", N_("Request body is not valid JSON: %(problem)s at line %(line)s, "
                                            "column %(column)s."),
                         status=400, problem=error.msg, line=error.lineno, column=error.colno) from None
    except (ValueError, RecursionError):
        raise InputError("invalid_json", N_("Request body is not valid JSON or is nested too deeply."),
                         status=400) from None
    if not isinstance(body, dict):
        raise InputError("invalid_body", N_("Request body must be a JSON object."), status=400)
    return body
