"""The request class, which limits every body to MAX_CONTENT_LENGTH, whether sent with Content-Length or chunked.

Werkzeug (3.1.9) rejects a Content-Length above the limit with 413 before reading anything. A chunked body
has no Content-Length, so Werkzeug wraps the stream in LimitedStream(limit, is_max=True). That stream's
read() stops at the limit and returns the first `limit` bytes without an error, and it raises 413 only on a
further read. request.get_data() and the urlencoded form parser never read further, so a longer chunked
body reached the views cut short: a JSON body failed as invalid JSON, and a form could file a ticket from
its first `limit` bytes. BodyLimitedRequest reads one byte past the limit instead, and raises 413 when that
byte exists.
"""

from __future__ import annotations

from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class LimitedBodyStream(LimitedStream):
    """A body stream of unknown length that may contain up to `max_bytes`. Reading one more byte raises 413."""

    def __init__(self, stream: IO[bytes], max_bytes: int):
        super().__init__(stream, max_bytes + 1, is_max=True)
        self.max_bytes = max_bytes

    def readinto(self, buffer: bytearray) -> int | None:  # type: ignore[override]
        size = super().readinto(buffer)
        if self.tell() > self.max_bytes:
            raise RequestEntityTooLarge()
        return size


class BodyLimitedRequest(Request):
    """Flask's request, which limits a chunked body to max_content_length as it limits one with Content-Length."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        # NOTE: on a server that does not set wsgi.input_terminated, a chunked body still reads as empty, which
        # is Werkzeug's safe fallback. Gunicorn and Werkzeug's own server both set it.
        streamed = self.content_length is None and "wsgi.input_terminated" in self.environ
        if limit is None or not streamed or self.shallow:
            return super().stream
        return LimitedBodyStream(self.environ["wsgi.input"], limit)
