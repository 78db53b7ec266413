"""System-written reasons: stored in Chinese, shown in English on English pages."""

from __future__ import annotations

from hotline import system_reasons


def test_known_reason_worded_in_english():
    assert system_reasons.worded(system_reasons.OFFERED_TO_AGENCY, "en") == "Offered to an agency"


def test_known_reason_kept_in_chinese():
    assert system_reasons.worded(system_reasons.OFFERED_TO_AGENCY, "zh") == "派单给代理机构"


def test_other_reason_shown_as_stored():
    assert system_reasons.worded("家属改约", "en") == "家属改约"


def test_missing_reason_empty():
    assert system_reasons.worded(None, "en") == ""
    assert system_reasons.worded("", "zh") == ""


def test_every_reason_has_english():
    constants = {value for name, value in vars(system_reasons).items() if name.isupper() and isinstance(value, str)}

    assert constants == set(system_reasons.ENGLISH)
    assert all(text.isascii() for text in system_reasons.ENGLISH.values())
