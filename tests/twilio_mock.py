"""A real HTTP server on 127.0.0.1 that imitates Twilio's Messages REST endpoint, and its pytest fixtures.

Use it from a test module with `from twilio_mock import twilio_mock  # noqa: F401` (the tests folder is on
sys.path) and point `TwilioSms`, or settings, at `twilio_mock.base_url`:

    def test_retry(twilio_mock):
        twilio_mock.respond(500)          # the first POST gets a 500 ...
        twilio_mock.respond(201)          # ... the second a created message
        ...
        assert twilio_mock.requests[1].form["Body"] == "..."

Responses are served from a FIFO queue; once it is empty every POST gets 201 and a created message.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account_sid>[^/]+)/Messages\.json$")


@dataclass(frozen=True)
class MockResponse:
    """One queued reply: an HTTP status, a JSON body (None builds a Twilio-shaped one) and a delay before it."""

    status: int = 201
    body: dict | None = None
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """A request the mock received, with its form fields decoded (the last value of each field)."""

    method: str
    path: str
    form: dict[str, str]
    authorization: str | None
    account_sid: str | None

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """The (username, password) pair of a Basic Authorization header, or None without one."""
        if not self.authorization or not self.authorization.startswith("Basic "):
            return None
        decoded = base64.b64decode(self.authorization.removeprefix("Basic ")).decode("utf-8")
        username, _, password = decoded.partition(":")
        return username, password


@dataclass
class TwilioMock:
    """A running mock server: queue replies with `respond`, read what arrived in `requests`."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    responses: deque[MockResponse] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def respond(self, status: int = 201, body: dict | None = None, delay_seconds: float = 0.0) -> None:
        """Queue the reply to the next POST that has no reply queued yet."""
        with self.lock:
            self.responses.append(MockResponse(status, body, delay_seconds))

    def next_response(self) -> MockResponse:
        with self.lock:
            return self.responses.popleft() if self.responses else MockResponse()

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_twilio_mock() -> TwilioMock:
    """Start the mock on an ephemeral port of 127.0.0.1 in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    # A short poll interval keeps shutdown at teardown quick (the default waits up to 0.5 s).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="twilio-mock", daemon=True
    )
    mock = TwilioMock(server=server, thread=thread)
    server.mock = mock
    thread.start()
    return mock


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        mock: TwilioMock = self.server.mock
        match = MESSAGES_PATH.match(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        fields = parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
        form = {name: values[-1] for name, values in fields.items()}

        mock.record(RecordedRequest(
            method="POST",
            path=self.path,
            form=form,
            authorization=self.headers.get("Authorization"),
            account_sid=match["account_sid"] if match else None,
        ))

        if match is None:
            self._send_json(404, _error_body(404, 20404, f"The requested resource {self.path} was not found"))
            return

        reply = mock.next_response()
        if reply.delay_seconds:
            time.sleep(reply.delay_seconds)
        body = reply.body if reply.body is not None else _default_body(reply.status, match["account_sid"], form)
        self._send_json(reply.status, body)

    def _send_json(self, status: int, body: dict) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as a timeout test wants

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature fixed by the base class
        pass  # keep pytest output clean; the recorded requests are the log


def _default_body(status: int, account_sid: str, form: dict[str, str]) -> dict:
    if status < 400:
        return {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages.json",
        }
    if status >= 500:
        return _error_body(status, 20500, "Internal Server Error")
    return _error_body(status, 21211, f"The 'To' number {form.get('To')} is not a valid phone number.")


def _error_body(status: int, code: int, message: str) -> dict:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


@pytest.fixture
def twilio_mock():
    """A running Twilio Messages mock, stopped after the test."""
    mock = start_twilio_mock()
    yield mock
    mock.stop()


@pytest.fixture
def twilio_settings(settings, twilio_mock):
    """The test settings with SMS sent through Twilio's API, served by `twilio_mock`."""
    return replace(settings, sms_backend="twilio", twilio_api_base_url=twilio_mock.base_url)
