"""Search terms of Chinese text: every CJK character and every pair of adjacent CJK characters, plus
Latin words and numbers, after NFKC normalisation (full-width digits and letters become ASCII)."""

from __future__ import annotations

import re
import unicodedata

# CJK Unified Ideographs, Extension A and the compatibility block, which cover the characters of
# Simplified Chinese text.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(f"[{_CJK}]+|[0-9a-z]+")
_IS_CJK = re.compile(f"[{_CJK}]")
TERM_MAX = 32
QUERY_TERMS_MAX = 64


def _runs(text: str) -> list[str]:
    return _RUN.findall(unicodedata.normalize("NFKC", text).casefold())


def _bigrams(run: str) -> list[str]:
    return [run[index:index + 2] for index in range(len(run) - 1)]


def text_terms(text: str) -> set[str]:
    """Return the terms an article's text is indexed under: CJK characters and bigrams, Latin words."""
    terms: set[str] = set()
    for run in _runs(text):
        if _IS_CJK.match(run):
            terms.update(run)
            terms.update(_bigrams(run))
        else:
            terms.add(run[:TERM_MAX])
    return terms


def query_terms(query: str) -> list[str]:
    """Return the distinct terms of a query, in order, at most QUERY_TERMS_MAX of them.

    A CJK run gives its bigrams, or the single character when it is one character long; a Latin word
    or number is one term.
    """
    terms: list[str] = []
    for run in _runs(query):
        if not _IS_CJK.match(run):
            candidates = [run[:TERM_MAX]]
        elif len(run) == 1:
            candidates = [run]
        else:
            candidates = _bigrams(run)
        terms.extend(term for term in candidates if term not in terms)
    return terms[:QUERY_TERMS_MAX]
