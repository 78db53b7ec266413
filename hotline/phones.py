"""Phone numbers as people type them, normalised to E.164 with the `phonenumbers` library.

Input is NFKC-normalised first, so full-width digits, the full-width hyphen and the ideographic space
become ASCII. An extension written with 转, 分机, ext or x is split off before parsing because
phonenumbers rejects `…转8001`. A bare 8-digit number is a Shanghai landline and gets the 021 area code.

A field contains one number. Text with two different numbers, such as "13812345678 / 021-59201234" or
"13812345678，13987654321", raises MultiplePhoneNumbers rather than keeping one of them: phonenumbers
itself would parse "13812345678;13987654321" as the first number and drop the second without an error.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "CN"
SHANGHAI_AREA_CODE = "021"

_EXTENSION = re.compile(r"^(?P<number>.*?)\s*(?:转|分机|ext\.?|x|#)\s*(?P<extension>\d{1,6})\s*$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s\-.()（）]")
# Separators people write between two numbers in one field, as they read after NFKC turns ，；／｜ into ASCII.
_LIST_SEPARATORS = re.compile(r"[/,;|\\、\n]|或者|或|和|及|\bor\b|\band\b", re.IGNORECASE)
# Texts whose valid number is kept: parsing one takes about 45 µs, and the same referrer's or caller's
# number comes back again and again.
CACHED_NUMBERS = 4096


class InvalidPhoneNumber(ValueError):
    """The text is not a possible phone number."""


@dataclass(frozen=True)
class PhoneNumber:
    e164: str
    extension: str | None = None


class MultiplePhoneNumbers(InvalidPhoneNumber):
    """Text that contains two or more different phone numbers where one is expected."""

    def __init__(self, text: str, numbers: list[PhoneNumber]):
        super().__init__(f"{text!r} contains {len(numbers)} phone numbers")
        self.numbers = numbers


@lru_cache(maxsize=CACHED_NUMBERS)
def normalise(text: str) -> PhoneNumber:
    """Return the E.164 form of `text` and its extension.

    Raise MultiplePhoneNumbers if the text lists two different numbers, and InvalidPhoneNumber if it is
    not one possible number. Results are cached, errors are not.
    """
    cleaned = unicodedata.normalize("NFKC", text or "").strip()
    if not cleaned:
        raise InvalidPhoneNumber("empty phone number")

    # Nearly every text is one number without list separators; parsing it whole settles it in one parse.
    if _LIST_SEPARATORS.search(cleaned) is None:
        whole = _number_or_none(cleaned)
        if whole is not None:
            return whole

    listed, all_numbers = _listed_numbers(cleaned)
    if len(set(listed)) > 1:
        raise MultiplePhoneNumbers(text, listed)
    if listed and all_numbers:
        # The same number written more than once, such as "13812345678, 138-1234-5678".
        return listed[0]
    return _parse_one(cleaned, text)


def _parse_one(cleaned: str, text: str) -> PhoneNumber:
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
    A number outside the mainland keeps its "+", so it is not read as a mainland one: +12125550100 -> +121****0100.
    """
    if not e164:
        return e164
    mainland = e164.startswith("+86")
    national = e164[3:] if mainland else e164.lstrip("+")
    if mainland and not national.startswith(("1", "400", "800")):
        national = "0" + national
    if len(national) <= 7:
        return "*" * len(national)
    masked = national[:3] + "****" + national[-4:]
    return masked if mainland or not e164.startswith("+") else "+" + masked


def _listed_numbers(cleaned: str) -> tuple[list[PhoneNumber], bool]:
    """Parse each part of a text that may list several numbers; return the valid numbers found, and whether
    every part was one.

    Parts are split at list separators. A part that is not one number is split again at spaces, which
    finds "13812345678 13987654321" but not the groups of "138 1234 5678", none of which is valid alone.
    """
    found = []
    all_numbers = True
    for part in _LIST_SEPARATORS.split(cleaned):
        if not part.strip():
            continue
        number = _number_or_none(part)
        if number is not None:
            found.append(number)
            continue
        words = [_number_or_none(word) for word in part.split()]
        found.extend(number for number in words if number is not None)
        all_numbers = all_numbers and all(number is not None for number in words)
    return found, all_numbers


def _number_or_none(part: str) -> PhoneNumber | None:
    part = part.strip()
    if not part:
        return None
    try:
        return _parse_one(part, part)
    except InvalidPhoneNumber:
        return None


def _split_extension(text: str) -> tuple[str, str | None]:
    match = _EXTENSION.match(text)
    if match is None:
        return text, None
    return match.group("number"), match.group("extension")
