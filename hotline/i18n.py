"""Language selection and message catalogues (Flask-Babel 4).

Message ids are the English source strings. The zh_Hans_CN catalogue in hotline/translations contains the
Simplified Chinese text, and users see it unless they choose English. The language comes from, in order:

1. the `lang` query parameter (`?lang=en`), which is also stored in the `lang` cookie
2. the `lang` cookie
3. the Accept-Language header
4. otherwise Simplified Chinese.

Werkzeug's Accept-Language matching picks the wrong catalogue here. It does not know that zh-CN implies the
Hans script, and `best_match` tries exact matches over the whole header before it falls back to primary
tags, so with Werkzeug 3.1.9 `zh-Hans,en;q=0.9` gave "en". The header's tags are therefore taken in order
of preference, and the first whose primary tag is zh or en picks the catalogue.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode

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
    app.after_request(vary_on_language)
    app.jinja_env.globals["language_url"] = language_url
    return babel


def select_locale() -> Locale:
    """Return the catalogue for this request, zh_Hans_CN or en, as the Locale Flask-Babel keeps for it.

    API clients send neither a query string nor cookies, so each is parsed only when the request has one.
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
    for tag, quality in parse_accept_header(header, LanguageAccept):
        chosen = locale_for_tag(tag) if quality > 0 else None
        if chosen is not None:
            return chosen
    return DEFAULT_LOCALE


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


def language_url(language: str) -> str:
    """Return the current page's address with `?lang=` set to `language`, keeping its other query parameters.

    The language links use it, so switching language keeps a login page's `next` or a list's filters.
    """
    arguments = [(key, value) for key, value in request.args.items(multi=True) if key != "lang"]
    arguments.append(("lang", language))
    return f"{quote(request.script_root + request.path)}?{urlencode(arguments)}"


def vary_on_language(response: Response) -> Response:
    """Add the headers that chose the response's language to Vary, so a shared cache keeps the languages apart.

    Static files are the same in every language and keep their Vary as it is.
    """
    if request.endpoint != "static":
        response.vary.update(("Accept-Language", "Cookie"))
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
