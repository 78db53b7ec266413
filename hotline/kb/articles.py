"""Knowledge articles: categories, field checks, saving as a new version, and reading versions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlmodel import Session, select

from hotline.kb import search
from hotline.models import KbArticle, KbArticleVersion
from hotline.validation import N_, InputError, required, unknown_value

log = logging.getLogger("hotline.kb")

CATEGORIES = {
    "welfare_policy": ("惠民政策", "Welfare policy"),
    "funeral_guide": ("白事指南", "Funeral guide"),
    "faq": ("便民问答", "Questions and answers"),
    "eco_burial": ("生态葬", "Eco-burial"),
    "death_bundle": ("身故一件事", "One-stop death procedures"),
}
ARTICLE_STATUSES = {
    "published": ("已发布", "Published"),
    "withdrawn": ("已撤下", "Withdrawn"),
}
LIMITS = {"title": 100, "summary": 500, "body": 20000, "change_note": 200}
SOURCE_NAME_MAX = 100
SOURCE_URL_MAX = 300
SOURCES_MAX = 10
TOO_LONG = N_("Field %(field)s is longer than %(limit)s characters.")


@dataclass(frozen=True)
class ArticleFields:
    """The content of one version of an article."""

    category: str
    title: str
    summary: str
    body: str
    sources: tuple[tuple[str, str], ...]
    checked_on: date
    status: str = "published"

    def source_dicts(self) -> list[dict[str, str]]:
        return [{"name": name, "url": url} for name, url in self.sources]


# --- checking a form -----------------------------------------------------------------------------


def parse_article_form(form: Mapping[str, str], today: date) -> tuple[ArticleFields | None, dict[str, InputError]]:
    """Check an article form; return the fields, or None and one error per invalid field.

    `sources` is one source a line, written "name | URL" or just the URL. `checked_on` is an ISO date
    that may not lie after `today`.
    """
    errors: dict[str, InputError] = {}
    texts = {}
    for field in ("title", "summary", "body"):
        try:
            texts[field] = _required_text(form, field)
        except InputError as error:
            errors[field] = error
    values = {
        "category": (_choice, form.get("category"), "category", CATEGORIES),
        "status": (_choice, form.get("status") or "published", "status", ARTICLE_STATUSES),
        "sources": (_sources, form.get("sources") or ""),
        "checked_on": (_checked_on, form.get("checked_on") or "", today),
    }
    parsed = {}
    for field, (check, *args) in values.items():
        try:
            parsed[field] = check(*args)
        except InputError as error:
            errors[field] = error
    if errors:
        return None, errors
    return ArticleFields(**texts, **parsed), {}


def parse_change_note(form: Mapping[str, str]) -> str | None:
    """Return the optional note saved with a version; raise InputError when it is too long."""
    note = (form.get("change_note") or "").strip()
    if len(note) > LIMITS["change_note"]:
        raise InputError("too_long", TOO_LONG, field="change_note", limit=LIMITS["change_note"])
    return note or None


def _required_text(form: Mapping[str, str], field: str) -> str:
    value = (form.get(field) or "").strip().replace("\r\n", "\n")
    if not value:
        raise required(field)
    if len(value) > LIMITS[field]:
        raise InputError("too_long", TOO_LONG, field=field, limit=LIMITS[field])
    return value


def _choice(value: str | None, field: str, accepted: Mapping[str, tuple[str, str]]) -> str:
    if not value:
        raise required(field)
    if value not in accepted:
        raise unknown_value(field, value, accepted)
    return value


def _sources(text: str) -> tuple[tuple[str, str], ...]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError("required", N_("Give at least one source: one a line, as \"name | URL\" or the URL."),
                         field="sources")
    if len(lines) > SOURCES_MAX:
        raise InputError("invalid_value", N_("Give at most %(limit)s sources."), field="sources", limit=SOURCES_MAX)
    return tuple(_source(line) for line in lines)


def _source(line: str) -> tuple[str, str]:
    name, _, url = line.rpartition("|")
    name, url = name.strip(), url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > SOURCE_URL_MAX or " " in url:
        raise InputError("invalid_url", N_("Source %(value)s needs an http or https URL of at most %(limit)s "
                                           "characters."), field="sources", value=line, limit=SOURCE_URL_MAX)
    if len(name) > SOURCE_NAME_MAX:
        raise InputError("too_long", N_("Source name %(value)s is longer than %(limit)s characters."),
                         field="sources", value=name, limit=SOURCE_NAME_MAX)
    return name or parts.netloc, url


def _checked_on(text: str, today: date) -> date:
    try:
        value = date.fromisoformat(text.strip())
    except ValueError:
        raise InputError("invalid_date", N_("Date checked must be a date such as 2026-12-04."),
                         field="checked_on") from None
    if value > today:
        raise InputError("invalid_date", N_("Date checked %(value)s is in the future."), field="checked_on",
                         value=value.isoformat())
    return value


# --- saving --------------------------------------------------------------------------------------


def create_article(session: Session, fields: ArticleFields, actor: str, now: datetime,
                   change_note: str | None = None) -> KbArticle:
    """Insert an article as version 1, with its version row and search terms."""
    article = KbArticle(category=fields.category, title=fields.title, summary=fields.summary, body=fields.body,
                        sources=fields.source_dicts(), checked_on=fields.checked_on, status=fields.status,
                        version=1, created_at=now, updated_at=now, updated_by=actor)
    session.add(article)
    session.flush()
    _add_version(session, article, change_note)
    search.index_article(session, article)
    log.info("KB: article %s created by %s", article.id, actor)
    return article


def update_article(session: Session, article_id: int, base_version: int, fields: ArticleFields, actor: str,
                   now: datetime, change_note: str | None = None) -> KbArticle:
    """Save `fields` as the next version of the article that was at `base_version` when the editor opened it.

    The conditional UPDATE on the version number is the lock: of two editors who opened the same
    version, the second to save gets a 409 InputError instead of overwriting the first one's work.
    """
    result = session.execute(
        update(KbArticle)
        .where(KbArticle.id == article_id)
        .where(KbArticle.version == base_version)
        .values(category=fields.category, title=fields.title, summary=fields.summary, body=fields.body,
                sources=fields.source_dicts(), checked_on=fields.checked_on, status=fields.status,
                version=base_version + 1, updated_at=now, updated_by=actor)
    )
    if result.rowcount != 1:
        raise InputError("conflict", N_("Article %(id)s was changed by someone else after you opened it; "
                                        "reload it and make your changes again."), field="version", status=409,
                         id=article_id)

    article = session.get(KbArticle, article_id)
    session.refresh(article)
    _add_version(session, article, change_note)
    search.index_article(session, article)
    log.info("KB: article %s saved as version %s by %s", article.id, article.version, actor)
    return article


def _add_version(session: Session, article: KbArticle, change_note: str | None) -> None:
    session.add(KbArticleVersion(
        article_id=article.id, version=article.version, category=article.category, title=article.title,
        summary=article.summary, body=article.body, sources=article.sources, checked_on=article.checked_on,
        status=article.status, change_note=change_note, saved_by=article.updated_by, saved_at=article.updated_at,
    ))
    session.flush()


# --- reading -------------------------------------------------------------------------------------


def list_articles(session: Session, category: str | None = None, include_withdrawn: bool = False,
                  limit: int | None = None, offset: int = 0) -> list[KbArticle]:
    """Articles by category, then the most recently updated first."""
    query = select(KbArticle)
    if category is not None:
        query = query.where(KbArticle.category == category)
    if not include_withdrawn:
        query = query.where(KbArticle.status == "published")
    query = query.order_by(KbArticle.category, KbArticle.updated_at.desc(), KbArticle.id).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def versions_of(session: Session, article_id: int) -> list[KbArticleVersion]:
    """Every saved version of an article, the newest first."""
    return list(session.exec(select(KbArticleVersion).where(KbArticleVersion.article_id == article_id)
                             .order_by(KbArticleVersion.version.desc())).all())


def find_version(session: Session, article_id: int, version: int) -> KbArticleVersion | None:
    return session.exec(select(KbArticleVersion).where(KbArticleVersion.article_id == article_id)
                        .where(KbArticleVersion.version == version)).first()


def fields_of(article: KbArticle | KbArticleVersion) -> ArticleFields:
    """Return the content of an article or of one of its versions in the shape a checked form has."""
    return ArticleFields(category=article.category, title=article.title, summary=article.summary, body=article.body,
                         sources=tuple((source["name"], source["url"]) for source in article.sources or []),
                         checked_on=article.checked_on, status=article.status)


def sources_text(fields: ArticleFields) -> str:
    """Write the sources the way the form reads them: "name | URL", one a line."""
    return "\n".join(f"{name} | {url}" for name, url in fields.sources)
