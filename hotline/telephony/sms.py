"""SMS backends: one that only logs (development) and one that sends through Twilio's Messages API.

A backend sends one message per call and never retries. On failure it raises `SmsSendError`, which
tells whether a retry may help, and the outbox decides when to try again.
"""

from __future__ import annotations

import json
import logging
import re
import uuid

from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from hotline.config import Settings

log = logging.getLogger("hotline.sms")

TWILIO_TIMEOUT_SECONDS = 10.0
# 429 (Too Many Requests) is a client error that goes away by waiting, so it is retried like a 5xx.
RETRYABLE_CLIENT_STATUSES = frozenset({429})


class SmsSendError(Exception):
    """A message was not sent. `retryable` is True when the same request may succeed later."""

    def __init__(self, message: str, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ConsoleSms:
    """Log each message instead of sending it."""

    def send(self, to: str, body: str) -> str:
        """Log the message at INFO with the number masked, and return a made-up id "console-<uuid>"."""
        message_id = f"console-{uuid.uuid4()}"
        log.info("SMS to %s: %s", mask_phone(to), body)
        return message_id


class TwilioSms:
    """Send messages with Twilio's Messages API, or with any server that imitates it at `api_base_url`."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base_url: str | None = None,
        timeout: float = TWILIO_TIMEOUT_SECONDS,
    ):
        # pool_connections=False gives every request its own requests.Session, so threads can share one
        # backend. The hotline sends too few messages for connection reuse to matter.
        http_client = TwilioHttpClient(pool_connections=False, timeout=timeout)
        self.client = Client(account_sid, auth_token, http_client=http_client)
        if api_base_url:
            # The Messages resource lives on the "api" domain, whose base_url replaces https://api.twilio.com.
            self.client.api.base_url = api_base_url
        self.from_number = from_number

    def send(self, to: str, body: str) -> str:
        """Send one message and return its Twilio SID, or raise `SmsSendError` when it was not accepted.

        NOTE: a timeout after Twilio received the request may still have sent the message, and the
        Messages API has no idempotency key, so retrying a timed-out send can deliver it twice.
        """
        masked = mask_phone(to)
        try:
            message = self.client.messages.create(to=to, from_=self.from_number, body=body)
        except (TwilioRestException, TwilioServiceException) as error:
            raise _rejected(error, masked) from error
        except Timeout as error:
            raise SmsSendError(f"Twilio timed out sending SMS to {masked}: {error}", retryable=True) from error
        except RequestsConnectionError as error:
            raise SmsSendError(f"Twilio is unreachable for SMS to {masked}: {error}", retryable=True) from error
        except json.JSONDecodeError as error:
            # The status was 2xx, so the message was probably accepted: sending it again could duplicate it.
            raise SmsSendError(
                f"Twilio accepted SMS to {masked} with an unreadable response: {error}", retryable=False
            ) from error

        log.info("SMS: sent %s to %s", message.sid, masked)
        return message.sid


def _rejected(error: TwilioRestException | TwilioServiceException, masked: str) -> SmsSendError:
    status = int(error.status)
    retryable = status >= 500 or status in RETRYABLE_CLIENT_STATUSES
    detail = getattr(error, "msg", None) or getattr(error, "detail", None) or getattr(error, "title", "")
    return SmsSendError(
        f"Twilio rejected SMS to {masked} with HTTP {status} (code {error.code}): {detail}",
        retryable=retryable,
        status=status,
    )


def make_sms_backend(settings: Settings) -> ConsoleSms | TwilioSms:
    """Build the backend named by `settings.sms_backend` ("console" or "twilio")."""
    if settings.sms_backend == "console":
        return ConsoleSms()

    if settings.sms_backend == "twilio":
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ValueError("SMS backend twilio needs HOTLINE_TWILIO_ACCOUNT_SID and HOTLINE_TWILIO_AUTH_TOKEN")
        return TwilioSms(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            from_number=settings.twilio_from_number,
            api_base_url=settings.twilio_api_base_url,
        )

    raise ValueError(f"SMS backend {settings.sms_backend!r} is invalid: expected console or twilio")


def mask_phone(e164: str) -> str:
    """Hide part of a phone number for logs and error messages.

    A mainland mobile keeps its first 3 and last 4 digits ("+8613812345678" -> "138****5678"). A
    mainland landline drops its area code and masks the last 4 digits of the local number
    ("+862159200496" -> "5920****"). Any other number shows only its last 4 digits ("****0123").
    """
    raw = (e164 or "").strip()
    digits = re.sub(r"\D", "", raw)
    national = _china_national_number(raw, digits)

    if national is not None and re.fullmatch(r"1\d{10}", national):
        return f"{national[:3]}****{national[-4:]}"

    if national is not None and len(national) >= 10:
        local = national[_china_area_code_length(national):]
        return f"{local[:-4]}****"

    if len(digits) <= 4:
        return "****"
    return f"****{digits[-4:]}"


def _china_national_number(raw: str, digits: str) -> str | None:
    """Return the national significant number of a mainland number, or None for any other number."""
    if raw.startswith("+"):
        return digits[2:] if digits.startswith("86") else None
    if re.fullmatch(r"1\d{10}", digits):
        return digits
    return None


def _china_area_code_length(national: str) -> int:
    # Mainland area codes starting with 10 (Beijing) or 2 (Shanghai 21, Guangzhou 20, ...) have two digits.
    return 2 if national.startswith(("10", "2")) else 3
