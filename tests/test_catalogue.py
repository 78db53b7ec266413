"""Every string the code marks for translation has a Chinese translation in the zh_Hans_CN catalogue."""

from __future__ import annotations

from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "hotline/translations/zh_Hans_CN/LC_MESSAGES/messages.po"


def _extracted_ids(tmp_path, monkeypatch) -> set[str]:
    # babel.cfg patterns are relative to the repository root, as `make messages` runs them.
    monkeypatch.chdir(ROOT)
    output = tmp_path / "messages.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "--mapping-file", "babel.cfg",
                                "--output-file", str(output), "."])
    with output.open("rb") as handle:
        return {message.id for message in read_po(handle) if message.id}


def test_every_marked_string_translated(tmp_path, monkeypatch):
    with CATALOGUE.open("rb") as handle:
        catalogue = {message.id: message for message in read_po(handle) if message.id}

    extracted = _extracted_ids(tmp_path, monkeypatch)
    missing = sorted(extracted - set(catalogue))
    untranslated = sorted(key for key, message in catalogue.items() if not message.string or message.fuzzy)

    assert len(extracted) > 20
    assert missing == [], "run `make messages` and translate the new entries"
    assert untranslated == []
