"""A guard against server-side request forgery (SSRF) for HTTP requests to URLs that platforms choose.

A host name is resolved, and every address it resolves to must be globally routable: not loopback
(unless the caller allows it), private, link-local, multicast, reserved or unspecified. IPv6 forms that
carry an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by that IPv4 address too. `post`
then connects to a checked address itself, so a second DNS answer cannot send the request elsewhere
(DNS rebinding), while the Host header, TLS SNI and certificate verification keep the URL's host name.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

log = logging.getLogger("hotline.ssrf_guard")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOKUP_TIMEOUT_SECONDS = 5.0
# RFC 6052's well-known prefix: a NAT64 gateway forwards 64:ff9b::a.b.c.d to the IPv4 address a.b.c.d.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# Checked in this order, so an address that is both loopback and reserved is reported as loopback.
ADDRESS_PROBLEMS = (
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)


class LookupFailed(Exception):
    """A host name that did not resolve. `temporary` is set when the lookup timed out or DNS was unavailable."""

    def __init__(self, host: str, detail: str, temporary: bool = False):
        super().__init__(f"DNS lookup of {host} failed: {detail}")
        self.host = host
        self.temporary = temporary


class AddressRejected(Exception):
    """A host that resolves to an address requests must not reach."""

    def __init__(self, host: str, address: IPAddress, problem: str):
        where = f"{address} is" if host == str(address) else f"{host} resolves to {address},"
        super().__init__(f"{where} {problem}")
        self.host = host
        self.address = address
        self.problem = problem


def checked_addresses(host: str, allow_loopback: bool = False) -> list[IPAddress]:
    """Resolve `host` and return its addresses; raise AddressRejected when any of them may not be reached.

    Raises LookupFailed when the name does not resolve within LOOKUP_TIMEOUT_SECONDS.
    """
    addresses = resolve(host)
    for address in addresses:
        problem = address_problem(address, allow_loopback)
        if problem is not None:
            raise AddressRejected(host, address, problem)
    return addresses


def resolve(host: str) -> list[IPAddress]:
    """Return the addresses of `host` in the order getaddrinfo prefers them, each once.

    An IP literal is returned as it is. getaddrinfo takes no timeout, so the lookup runs in a daemon
    thread, which is left to end by itself when it takes longer than LOOKUP_TIMEOUT_SECONDS.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in _getaddrinfo(host, LOOKUP_TIMEOUT_SECONDS):
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise LookupFailed(host, "no addresses")
    return addresses


def _getaddrinfo(host: str, timeout: float) -> list[tuple]:
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, ValueError) as error:  # ValueError: a name IDNA cannot encode
            outcome["error"] = error

    thread = threading.Thread(target=lookup, name="ssrf-guard-lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise LookupFailed(host, f"timed out after {timeout:g} s", temporary=True)
    error = outcome.get("error")
    if error is not None:
        temporary = isinstance(error, socket.gaierror) and error.errno == socket.EAI_AGAIN
        raise LookupFailed(host, str(error), temporary=temporary)
    return outcome["infos"]


def address_problem(address: IPAddress, allow_loopback: bool = False) -> str | None:
    """Return why requests must not go to `address`, such as "a private address", or None when they may.

    An IPv4-mapped address is judged as the IPv4 address it maps. 6to4, Teredo and NAT64 addresses are
    judged as they are and by each IPv4 address they carry, because their relays forward to it.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_problem(address.ipv4_mapped, allow_loopback)
    problem = _own_problem(address, allow_loopback)
    if problem is not None:
        return problem
    for carried in _carried_ipv4(address):
        carried_problem = _own_problem(carried, allow_loopback=False)
        if carried_problem is not None:
            return f"which carries {carried}, {carried_problem}"
    return None


def _own_problem(address: IPAddress, allow_loopback: bool) -> str | None:
    if address.is_loopback and allow_loopback:
        return None
    for attribute, problem in ADDRESS_PROBLEMS:
        if getattr(address, attribute):
            return problem
    if not address.is_global:  # such as 100.64.0.0/10, shared address space used inside carriers and clouds
        return "not a globally routable address"
    return None


def _carried_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    carried = []
    if address.sixtofour is not None:
        carried.append(address.sixtofour)
    if address.teredo is not None:
        carried.extend(address.teredo)  # the Teredo server and the client's public address
    if address in NAT64_PREFIX:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return carried


class PinnedAdapter(HTTPAdapter):
    """A transport adapter that connects to one given address instead of resolving the URL's host.

    The URL's host name still goes into the Host header and, over https, into SNI and the certificate
    check, through urllib3's `server_hostname` pool keyword, which the check uses when `assert_hostname`
    is unset (urllib3 2.x).
    """

    def __init__(self, address: IPAddress):
        super().__init__(max_retries=0)
        self.address = address

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = host_params["host"]
        host_params["host"] = str(self.address)
        return host_params, pool_kwargs

    def add_headers(self, request, **kwargs) -> None:
        # The connection's host is the address, so http.client would otherwise send it as the Host.
        request.headers["Host"] = urlsplit(request.url).netloc.rpartition("@")[2]


def post(url: str, addresses: Sequence[IPAddress], *, data: bytes, headers: dict[str, str],
         timeout: float) -> requests.Response:
    """POST to `url` through the first of `addresses` that accepts a connection, and close the response.

    Only the status and headers are read. Redirects are not followed, and proxy variables, .netrc and
    CA-bundle variables of the environment are ignored, so every request goes straight to a checked address.
    Raises requests.RequestException.
    """
    for index, address in enumerate(addresses):
        with requests.Session() as session:
            session.trust_env = False
            adapter = PinnedAdapter(address)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            try:
                response = session.post(url, data=data, headers=headers, timeout=timeout, allow_redirects=False,
                                        stream=True)
            except requests.ConnectionError as error:
                if index + 1 == len(addresses) or not _not_connected(error):
                    raise
                log.info("SSRF guard: %s did not connect at %s, trying %s: %s", urlsplit(url).hostname, address,
                         addresses[index + 1], error)
                continue
            response.close()
            return response
    raise ValueError("post needs at least one address")


def _not_connected(error: requests.ConnectionError) -> bool:
    """Return whether the request failed before a connection was made, so nothing reached the receiver."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, NewConnectionError)
