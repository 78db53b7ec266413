"""Unified social credit codes (统一社会信用代码) and their check character, per GB 32100-2015.

A code has 18 characters: the registering authority (1), the organisation type (2), the administrative
division code of the registering office (3-8, digits), the organisation's identifier (9-17) and a check
character (18). The characters are the digits and the capital letters other than I, O, S, V and Z. They
are valued 0 to 30 in this order: 0-9 A B C D E F G H J K L M N P Q R T U W X Y.

The check character has the value 31 - (sum of value_i * weight_i for i = 1..17 mod 31), where weight_i is
3^(i-1) mod 31 and a result of 31 stands for 0. This is the rule of GB 32100-2015 as reproduced in
public descriptions of the standard, whose worked example 91350100M000100Y4 gives the check character 3.
"""

from __future__ import annotations

import re
import unicodedata

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
LENGTH = 18
WEIGHTS = tuple(pow(3, position, 31) for position in range(LENGTH - 1))
_DIVISION_CODE = re.compile(r"\d{6}")


class InvalidCreditCode(ValueError):
    """The text is not a valid unified social credit code; `problem` is length, character or check."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


def check_character(first_17: str) -> str:
    """Compute the check character of the first 17 characters of a code."""
    if len(first_17) != LENGTH - 1 or any(character not in ALPHABET for character in first_17):
        raise ValueError(f"expected 17 characters from {ALPHABET}, got {first_17!r}")

    total = sum(ALPHABET.index(character) * weight for character, weight in zip(first_17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def normalise(text: str) -> str:
    """Return `text` as a checked code in capitals; raise InvalidCreditCode if it is not one.

    Full-width characters, surrounding spaces and lower-case letters are accepted and converted.
    """
    code = unicodedata.normalize("NFKC", text or "").strip().upper()
    if len(code) != LENGTH:
        raise InvalidCreditCode(f"{code!r} has {len(code)} characters, not {LENGTH}", "length")

    bad = [character for character in code if character not in ALPHABET]
    if bad or not _DIVISION_CODE.fullmatch(code[2:8]):
        raise InvalidCreditCode(f"{code!r} contains characters a credit code cannot have", "character")

    expected = check_character(code[:17])
    if code[17] != expected:
        raise InvalidCreditCode(f"{code!r} ends in {code[17]!r} but its check character is {expected!r}", "check")
    return code
