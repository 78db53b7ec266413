"""Checks of the agency registration fields, shared by the JSON API and the CLI.

`clean` turns raw values into what the Agency table stores: codes in capitals, dates, town codes, phone
numbers in E.164. Each bad value raises InputError naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from sqlmodel import Session, select

from hotline import credit_codes, phones
from hotline.models import Town
from hotline.validation import N_, InputError, multiple_phones, required, unknown_value, wrong_type
from hotline.vocabulary import AGENCY_KINDS

ALL_TOWNS = "*"
SERVICES = ("body_transport", "funeral_arrangement", "ash_storage", "eco_burial")
FIELDS = ("name", "kind", "credit_code", "filing_number", "filing_expires_on", "licence_expires_on", "towns",
          "services", "price_list_url", "duty_hours", "capacity", "contact_phone", "other_phones")
ALWAYS_REQUIRED = ("name", "kind", "towns", "services", "contact_phone")
# A funeral agency is vetted on its credit code, its filing (备案) with the civil-affairs bureau and its
# published price list (明码标价). The funeral home's own team needs none of them.
AGENCY_REQUIRED = ("credit_code", "filing_number", "filing_expires_on", "price_list_url")
MAX_CAPACITY = 100
MAX_OTHER_PHONES = 5

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A daily window HH:MM-HH:MM; the end may be 24:00 and may be earlier than the start (a night shift).
_DUTY_HOURS = re.compile(r"(?P<start>(?:[01]\d|2[0-3]):[0-5]\d)-(?P<end>(?:[01]\d|2[0-3]):[0-5]\d|24:00)")
_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)

INVALID_PHONE_MESSAGE = N_("Phone number %(value)s is not a valid number; write a mobile number such as "
                           "13812345678 or a landline with its area code such as 021-59200496.")
CREDIT_CODE_MESSAGES = {
    "length": N_("Credit code %(value)s must have 18 characters."),
    "character": N_("Credit code %(value)s has a character a credit code cannot have: characters 3 to 8 are "
                    "digits, and the letters I, O, S, V and Z are never used."),
    "check": N_("Credit code %(value)s has a wrong check character (the 18th); check it for a typing error."),
}


def clean(session: Session, raw: Mapping[str, Any], partial: bool) -> dict[str, Any]:
    """Check the fields in `raw` and return them as stored.

    With `partial` (an update) only the fields present are returned. Otherwise (a registration) every
    field is returned, and a missing optional field becomes None or an empty list.
    """
    for key in raw:
        if key not in FIELDS:
            raise InputError("unknown_field", N_("Unknown field %(field)s; accepted fields: %(accepted)s."),
                             field=str(key), accepted=", ".join(FIELDS))

    parsers = _parsers(session)
    cleaned = {}
    for field in FIELDS:
        if partial and field not in raw:
            continue
        cleaned[field] = parsers[field](raw.get(field), field)
    return cleaned


def check_complete(fields: Mapping[str, Any]) -> None:
    """Raise InputError for the first required field that is empty, given the agency's kind."""
    needed = ALWAYS_REQUIRED + (AGENCY_REQUIRED if fields.get("kind") == "agency" else ())
    for field in needed:
        if fields.get(field) in (None, "", []):
            if field in AGENCY_REQUIRED:
                raise InputError("required", N_("Field %(field)s is required for a funeral agency."), field=field)
            raise required(field)


def _parsers(session: Session) -> dict[str, Callable[[Any, str], Any]]:
    return {
        "name": _text(100),
        "kind": _kind,
        "credit_code": _credit_code,
        "filing_number": _text(40),
        "filing_expires_on": _date,
        "licence_expires_on": _date,
        "towns": lambda value, field: _towns(session, value, field),
        "services": _services,
        "price_list_url": _url,
        "duty_hours": _duty_hours,
        "capacity": _capacity,
        "contact_phone": _mobile,
        "other_phones": _phones,
    }


def _text(max_length: int) -> Callable[[Any, str], str | None]:
    def parse(value: Any, field: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise wrong_type(field, "string")
        value = value.strip()
        if len(value) > max_length:
            raise InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."), field=field,
                             limit=max_length)
        return value or None

    return parse


def _kind(value: Any, field: str) -> str | None:
    text = _text(16)(value, field)
    if text is not None and text not in AGENCY_KINDS:
        raise unknown_value(field, text, AGENCY_KINDS)
    return text


def _credit_code(value: Any, field: str) -> str | None:
    text = _text(40)(value, field)
    if text is None:
        return None
    try:
        return credit_codes.normalise(text)
    except credit_codes.InvalidCreditCode as error:
        raise InputError("invalid_credit_code", CREDIT_CODE_MESSAGES[error.problem], field=field,
                         value=text) from None


def _date(value: Any, field: str) -> date | None:
    text = _text(10)(value, field) if not isinstance(value, date) else value.isoformat()
    if text is None:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise InputError("invalid_date", N_("Field %(field)s must be a date written YYYY-MM-DD, such as 2027-06-30."),
                         field=field) from None


def _string_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise wrong_type(field, "list_of_strings")
    return [item.strip() for item in value if item.strip()]


def _towns(session: Session, value: Any, field: str) -> list[str]:
    """Town names or statistical codes to sorted codes; "*" alone stands for every town."""
    items = _string_list(value, field)
    if ALL_TOWNS in items:
        return [ALL_TOWNS]

    towns = session.exec(select(Town).order_by(Town.code)).all()
    code_of = {town.name: town.code for town in towns} | {town.code: town.code for town in towns}
    for item in items:
        if item not in code_of:
            raise unknown_value(field, item, [town.name for town in towns] + [ALL_TOWNS])
    return sorted({code_of[item] for item in items})


def _services(value: Any, field: str) -> list[str]:
    items = _string_list(value, field)
    for item in items:
        if item not in SERVICES:
            raise unknown_value(field, item, SERVICES)
    return [service for service in SERVICES if service in items]


def _url(value: Any, field: str) -> str | None:
    text = _text(300)(value, field)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(character.isspace() for character in text):
        raise InputError("invalid_url", N_("Field %(field)s must be an http or https address, such as "
                                           "https://example.org/prices.pdf."), field=field)
    return text


def _duty_hours(value: Any, field: str) -> str | None:
    text = _text(20)(value, field)
    if text is None:
        return None
    # NFKC turns full-width digits, colons and the full-width tilde into ASCII.
    text = unicodedata.normalize("NFKC", text).replace(" ", "").replace("~", "-").replace("–", "-")
    match = _DUTY_HOURS.fullmatch(text)
    if match is None or match["start"] == match["end"]:
        raise InputError("invalid_duty_hours", N_("Field %(field)s must be a daily window written HH:MM-HH:MM, "
                                                  "such as 08:00-20:00; write 00:00-24:00 for round the clock."),
                         field=field)
    return text


def _capacity(value: Any, field: str) -> int:
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAPACITY:
        raise InputError("invalid_value", N_("Field %(field)s must be an integer from %(minimum)s to %(maximum)s."),
                         field=field, minimum=0, maximum=MAX_CAPACITY)
    return value


def _phone(text: str, field: str) -> phonenumbers.PhoneNumber:
    try:
        number = phones.normalise(text)
    except phones.MultiplePhoneNumbers:
        raise _multiple_phones(field, text) from None
    except phones.InvalidPhoneNumber:
        raise InputError("invalid_phone", INVALID_PHONE_MESSAGE, field=field, value=text) from None
    if number.extension is not None:
        raise InputError("invalid_phone", N_("Phone number %(value)s has an extension; give a number that is "
                                             "reached directly."), field=field, value=text)
    return phonenumbers.parse(number.e164)


def _multiple_phones(field: str, text: str) -> InputError:
    """Point a second contact_phone number to other_phones, and a list item of two numbers to two items."""
    if field == "other_phones":
        return InputError("multiple_phones", N_("Each item of %(field)s takes one phone number, but %(value)s "
                                                "contains more than one; give each number as its own item."),
                          field=field, value=text)
    return multiple_phones(field, text, other_field="other_phones")


def _mobile(value: Any, field: str) -> str | None:
    text = _text(40)(value, field)
    if text is None:
        return None
    number = _phone(text, field)
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise InputError("invalid_phone", N_("Phone number %(value)s is not a mobile number; offers are sent by "
                                             "SMS, so this must be a mobile."), field=field, value=text)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phones(value: Any, field: str) -> list[str]:
    items = _string_list(value, field)
    if len(items) > MAX_OTHER_PHONES:
        raise InputError("too_long", N_("Field %(field)s may list at most %(limit)s numbers."), field=field,
                         limit=MAX_OTHER_PHONES)
    numbers = [_phone(item, field) for item in items]
    e164 = [phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) for number in numbers]
    return list(dict.fromkeys(e164))
