"""Phone numbers as people type them, normalised to E.164 with the `phonenumbers` library.

Input is NFKC-normalised first, so full-width digits, the full-width hyphen and the ideographic space
become ASCII. An extension written with 转, 分机, ext or x is split off before parsing because
phonenumbers rejects `…转8001`. A bare 8-digit number is a Shanghai landline and gets the 021 area code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

DEFAULT_REGION = "CN"
SHANGHAI_AREA_CODE = "021"

_EXTENSION = re.compile(r"^(?P<number>.*?)\s*(?:转|分机|ext\.?|x|#)\s*(?P<extension>\d{1,6})\s*$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s\-.()（）]")


class InvalidPhoneNumber(ValueError):
    """The text is not a possible phone number."""


@dataclass(frozen=True)
class PhoneNumber:
    e164: str
    extension: str | None = None


def normalise(text: str) -> PhoneNumber:
    """Return the E.164 form of `text` and its extension; raise InvalidPhoneNumber if it is impossible."""
    cleaned = unicodedata.normalize("NFKC", text or "").strip()
    if not cleaned:
        raise InvalidPhoneNumber("empty phone number")

    number_part, extension = _split_extension(cleaned)
    digits_only = _SEPARATORS.sub("", number_part)
    if digits_only.isdigit() and len(digits_only) == 8:
        digits_only = SHANGHAI_AREA_CODE + digits_only

    try:
        parsed = phonenumbers.parse(digits_only, DEFAULT_REGION)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber(f"{text!r} cannot be parsed: {error}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"{text!r} is not a valid number")

    return PhoneNumber(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), extension)


def normalise_or_none(text: str | None) -> str | None:
    """E.164 of a number from a trusted channel (a Twilio From field), or None when it is withheld or odd."""
    if not text:
        return None
    try:
        return normalise(text).e164
    except InvalidPhoneNumber:
        return None


def mask(e164: str | None) -> str | None:
    """Mask a number for people who may not see it in full: +8613812345678 -> 138****5678.

    Mainland landlines keep their trunk prefix so the area stays readable: +862159200496 -> 021****0496.
    """
    if not e164:
        return e164
    national = e164[3:] if e164.startswith("+86") else e164.lstrip("+")
    if e164.startswith("+86") and not national.startswith(("1", "400", "800")):
        national = "0" + national
    if len(national) <= 7:
        return "*" * len(national)
    return national[:3] + "****" + national[-4:]


def _split_extension(text: str) -> tuple[str, str | None]:
    match = _EXTENSION.match(text)
    if match is None:
        return text, None
    return match.group("number"), match.group("extension")
