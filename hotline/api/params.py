"""Query-string parameters of the JSON API, read with errors that state what to fix."""

from __future__ import annotations

from flask import request

from hotline.validation import N_, InputError


def int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    """Read the integer parameter `name`, `default` when absent; raise InputError outside minimum..maximum."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise InputError("invalid_value", N_("Parameter %(field)s must be an integer from %(minimum)s to %(maximum)s."),
                         field=name, minimum=minimum, maximum=maximum)
    return value
