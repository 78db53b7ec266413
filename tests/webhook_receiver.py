"""A webhook receiver on 127.0.0.1 and a stand-in DNS, with their pytest fixtures.

Loaded from conftest.py as a plugin, so every test module can use `receiver` and `fake_dns`. Webhooks reach
the receiver only where the test is marked `webhook_loopback`, which turns HOTLINE_WEBHOOK_ALLOW_LOOPBACK on
in the `settings` fixture. `fake_dns` replaces socket.getaddrinfo: a test lists the addresses of the names it
needs, every other name fails as not found, and IP literals go to the real function, so no lookup leaves the
machine.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every request and responds with `status` (503 while down)."""

    server: ThreadingHTTPServer
    scheme: str = "http"
    status: int = 200
    requests: list[dict] = field(default_factory=list)
    # Server names (SNI) that TLS clients sent, for a receiver started with a TLS context.
    server_names: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        return self.url_at(host)

    def url_at(self, host_name: str) -> str:
        """The receiver's URL under another host name, which a test makes resolve to 127.0.0.1."""
        port = self.server.server_address[1]
        return f"{self.scheme}://{host_name}:{port}/hooks/hotline"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_receiver(tls_context: ssl.SSLContext | None = None) -> Receiver:
    """Start a receiver on a free port of 127.0.0.1, over https when `tls_context` is given."""
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8")
            state = holder["receiver"]
            with state.lock:
                state.requests.append({"headers": dict(self.headers), "body": body, "status": state.status})
                status = state.status
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server)
    if tls_context is not None:
        tls_context.sni_callback = lambda _socket, name, _context: receiver.server_names.append(name)
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
        receiver.scheme = "https"
    holder["receiver"] = receiver
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return receiver


@pytest.fixture
def receiver():
    started = start_receiver()
    yield started
    started.stop()


class FakeDns:
    """A stand-in for socket.getaddrinfo that returns the addresses listed in `answers` and records each lookup."""

    def __init__(self, real_getaddrinfo):
        self.real_getaddrinfo = real_getaddrinfo
        self.answers: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self.hanging: set[str] = set()  # names whose lookup blocks until the test ends
        self.unavailable: set[str] = set()  # names whose lookup fails as if no DNS server answered
        self.release = threading.Event()

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - getaddrinfo's names
        if _is_ip_literal(host):
            return self.real_getaddrinfo(host, port, family, type, proto, flags)
        self.lookups.append(host)
        if host in self.hanging:
            self.release.wait(timeout=10)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host in self.unavailable:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        addresses = self.answers.get(host)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [_address_info(address, port) for address in addresses]


def _is_ip_literal(host) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address_info(address: str, port) -> tuple:
    port = int(port or 0)
    if ipaddress.ip_address(address).version == 6:
        return socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0)
    return socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port)


@pytest.fixture
def fake_dns(monkeypatch):
    dns = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    yield dns
    dns.release.set()
