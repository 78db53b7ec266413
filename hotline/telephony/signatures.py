"""Twilio webhook signatures (X-Twilio-Signature) and the public URL they are computed over.

Twilio signs the URL it called, so behind a proxy the URL Flask receives (http://127.0.0.1:8000/...) must be
rewritten to the public one before checking. The check itself is twilio's RequestValidator, which
compares in constant time and accepts the URL both with and without the default port.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator


def public_url(request_url: str, public_base_url: str | None) -> str:
    """Return `request_url` with its scheme and host:port taken from `public_base_url`, when that is set.

    The path and query string of `request_url` are kept. A path in `public_base_url` is ignored, so an
    application mounted under a prefix must receive that prefix in the request path (SCRIPT_NAME).
    """
    if not public_base_url:
        return request_url

    request_parts = urlsplit(request_url)
    base_parts = urlsplit(public_base_url)
    return urlunsplit(
        (base_parts.scheme, base_parts.netloc, request_parts.path, request_parts.query, request_parts.fragment)
    )


def compute_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Compute the X-Twilio-Signature value Twilio sends for a POST of `params` to `url`.

    The signed string is the URL followed by each parameter name and value, sorted by name. The
    signature is the base64 of that string's HMAC-SHA1 under the auth token.
    """
    return RequestValidator(auth_token).compute_signature(url, params)


def is_valid_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """Return True when `signature` is Twilio's signature of `url` and `params` under `auth_token`.

    A missing or empty signature, or an empty auth token, is never valid. `params` may be a plain
    mapping or a Werkzeug MultiDict, whose repeated fields are all signed.
    """
    if not signature or not auth_token:
        return False

    return RequestValidator(auth_token).validate(url, params, signature)
