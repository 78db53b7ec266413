"""Phone normalisation: E.164, extensions, Shanghai landlines, and the cache of parsed numbers."""

from __future__ import annotations

import pytest

from hotline import phones


@pytest.mark.parametrize(("text", "e164", "extension"), [
    ("13812345678", "+8613812345678", None),
    ("１３８－１２３４－５６７８", "+8613812345678", None),
    ("59200496", "+862159200496", None),
    ("021-59200496转8001", "+862159200496", "8001"),
])
def test_normalise_forms(text, e164, extension):
    number = phones.normalise(text)

    assert number.e164 == e164
    assert number.extension == extension


def test_normalise_cached_result_is_same():
    first = phones.normalise("138 6245 2821")

    second = phones.normalise("138 6245 2821")

    assert second is first


def test_normalise_error_raised_every_time():
    for _ in range(2):
        with pytest.raises(phones.InvalidPhoneNumber):
            phones.normalise("12345")


def test_normalise_two_numbers_raised_every_time():
    for _ in range(2):
        with pytest.raises(phones.MultiplePhoneNumbers):
            phones.normalise("13812345678 / 13987654321")


@pytest.mark.parametrize("e164, masked", [
    ("+8613812345678", "138****5678"),
    ("+862159200496", "021****0496"),
    ("+12125550100", "+121****0100"),
    ("+85291234567", "+852****4567"),
])
def test_mask_keeps_foreign_plus(e164, masked):
    assert phones.mask(e164) == masked
