"""Language selection and message catalogues (Flask-Babel 4).

Message ids are the English source strings. The zh_Hans_CN catalogue in hotline/translations contains the
Simplified Chinese text, and users see it unless they choose English. The language comes from, in order:

1. the `lang` query parameter (`?lang=en`), which is also stored in the `lang` cookie
2. the `lang` cookie
3. the Accept-Language header
4. otherwise Simplified Chinese.

Babel parses "zh_CN" as zh_Hans_CN, but Werkzeug's Accept-Language matching does not know that zh-CN
implies the Hans script: with Werkzeug 3.1.9, `Accept-Language: zh-CN,en;q=0.5` matched against
["zh_Hans_CN", "en"] gives "en". The header is therefore matched against the tags browsers send, and the
result is mapped to a catalogue.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from babel import Locale
from flask import Flask, Response, has_request_context, request
from flask_babel import Babel, get_locale
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
CHINESE = "zh_Hans_CN"
ENGLISH = "en"
DEFAULT_LOCALE = CHINESE
LANGUAGE_COOKIE = "lang"
LANGUAGE_COOKIE_MAX_AGE_SECONDS = 365 * 24 * 3600

# Accept-Language tags Werkzeug can match, and the catalogue each one selects.
ACCEPTED_TAGS = {"zh_CN": CHINESE, "zh": CHINESE, "en": ENGLISH}


def init_babel(app: Flask) -> Babel:
    """Set up Flask-Babel on `app` with the hotline's catalogues and language selection.

    Values already in app.config (BABEL_DEFAULT_LOCALE, BABEL_DEFAULT_TIMEZONE,
    BABEL_TRANSLATION_DIRECTORIES) are kept.
    """
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Shanghai")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))

    babel = Babel(app, locale_selector=select_locale)
    app.after_request(remember_language_choice)
    return babel


def select_locale() -> Locale:
    """Return the catalogue for this request, zh_Hans_CN or en, as the Locale Flask-Babel keeps for it.

    A request without a query string or cookies, as API clients send them, skips parsing those.
    Flask-Babel takes a Locale as it is, so each catalogue's Locale is parsed once per process.
    """
    environ = request.environ
    if environ.get("QUERY_STRING"):
        chosen = locale_for_tag(request.args.get("lang", ""))
        if chosen is not None:
            return _parsed(chosen)

    if environ.get("HTTP_COOKIE"):
        chosen = locale_for_tag(request.cookies.get(LANGUAGE_COOKIE, ""))
        if chosen is not None:
            return _parsed(chosen)

    return _parsed(_locale_for_accept_language(environ.get("HTTP_ACCEPT_LANGUAGE", "")))


@cache
def _parsed(name: str) -> Locale:
    return Locale.parse(name)


@lru_cache(maxsize=256)
def _locale_for_accept_language(header: str) -> str:
    """Map an Accept-Language header to a catalogue; clients send few distinct headers, so results are cached."""
    best = parse_accept_header(header, LanguageAccept).best_match(list(ACCEPTED_TAGS))
    return ACCEPTED_TAGS[best] if best else DEFAULT_LOCALE


def locale_for_tag(tag: str) -> str | None:
    """Map a language tag such as "en-US", "zh", "zh_CN" or "zh-Hans-CN" to a catalogue, or None for other languages."""
    primary = tag.strip().replace("-", "_").split("_", 1)[0].lower()
    if primary == "zh":
        return CHINESE
    if primary == "en":
        return ENGLISH
    return None


def remember_language_choice(response: Response) -> Response:
    """Store a `?lang=` choice in the `lang` cookie, so the following pages keep that language."""
    if not request.environ.get("QUERY_STRING"):
        return response
    chosen = locale_for_tag(request.args.get("lang", ""))
    if chosen is not None and request.cookies.get(LANGUAGE_COOKIE) != chosen:
        response.set_cookie(
            LANGUAGE_COOKIE,
            chosen,
            max_age=LANGUAGE_COOKIE_MAX_AGE_SECONDS,
            samesite="Lax",
            httponly=True,
            secure=request.is_secure,
        )
    return response


def current_language() -> Literal["zh", "en"]:
    """Return "zh" or "en" for the current request, to pick from (Chinese, English) label pairs.

    Outside a request this returns "zh", the default language.
    """
    if not has_request_context():
        return "zh"
    locale = get_locale()
    if locale is not None and locale.language == "en":
        return "en"
    return "zh"
