"""Flask's JSON provider that encodes jsonify() responses with orjson, in the bytes the json module writes."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

log = logging.getLogger(__name__)

# Datetimes, dates, times and dataclasses go to Flask's `default`, because orjson's own forms of them differ
# from Flask's. That function writes an HTTP date for a date or datetime, returns dataclasses.asdict() for a
# dataclass and raises TypeError for a time. OPT_APPEND_NEWLINE adds the newline that ends Flask's responses.
ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_APPEND_NEWLINE


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider with jsonify() responses encoded by orjson, for compact UTF-8 in insertion order.

    Other settings (ensure_ascii, sort_keys, indented output in debug mode) go through DefaultJSONProvider.
    So does any value that orjson rejects, such as an integer beyond 64 bits, a dict key that is not a
    string or a lone surrogate, so it behaves as before. dumps() and loads(), which the tojson template
    filter and the session cookie use, stay on the json module.

    NOTE: orjson 3.13 writes floats of magnitude below 1e-4 in other digits than the json module (1e-7 for
    1e-07, 0.000012 for 1.2e-05), though they parse to the same number. It writes NaN and Infinity, which the
    json module writes although JSON has no such values, as null. The app's floats are percentages and
    medians rounded to one decimal, which both write alike.
    """

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if self.ensure_ascii or self.sort_keys or not self._compact():
            return super().response(*args, **kwargs)

        value = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(value, default=self.default, option=ORJSON_OPTIONS)
        except orjson.JSONEncodeError as error:
            log.debug("JSON: orjson cannot encode the response (%s), so the json module encodes it", error)
            return super().response(*args, **kwargs)
        return self._app.response_class(body, mimetype=self.mimetype)

    def _compact(self) -> bool:
        """Return whether response() writes compact JSON, by the same test as DefaultJSONProvider.response()."""
        return not ((self.compact is None and self._app.debug) or self.compact is False)
