"""The portal's knowledge base: referrers search the published articles and read one with its sources.

The pages are routes of the portal blueprint, so the portal's guard and login apply to them. Withdrawn
articles are not listed and their pages return 404, as they do in the public API.
"""

from __future__ import annotations

from typing import Any

from flask import abort, render_template, request
from sqlmodel import Session

from hotline.i18n import current_language
from hotline.kb import articles, search
from hotline.models import KbArticle
from hotline.referrers import REFERRER_ROLES
from hotline.vocabulary import label
from hotline.web.auth import roles_required
from hotline.web.portal import bp, runtime

RESULTS_MAX = 30
QUERY_MAX = 100


@bp.get("/kb")
@roles_required(*REFERRER_ROLES)
def kb_search():
    """Search the published articles; without a query, list the first RESULTS_MAX of them by category."""
    query = (request.args.get("q") or "").strip()[:QUERY_MAX]
    category = request.args.get("category")
    if category not in articles.CATEGORIES:
        category = None
    language = current_language()

    with runtime().transaction() as session:
        found = _find(session, query, category)
        rows = [_result_row(article, language) for article in found]

    return render_template(
        "portal_kb.html", query=query, category=category, rows=rows, limit=RESULTS_MAX, language=language,
        categories=[(code, label(articles.CATEGORIES, code, language)) for code in articles.CATEGORIES],
    )


@bp.get("/kb/<int:article_id>")
@roles_required(*REFERRER_ROLES)
def kb_article(article_id: int):
    language = current_language()
    with runtime().transaction() as session:
        article = session.get(KbArticle, article_id)
        if article is None or article.status != "published":
            abort(404)
        view = _article_view(article, language)
    return render_template("portal_kb_article.html", article=view, back=_back_link(), language=language)


def _find(session: Session, query: str, category: str | None) -> list[KbArticle]:
    if query:
        hits = search.search_articles(session, query, category=category, limit=RESULTS_MAX)
        return [hit.article for hit in hits]
    return articles.list_articles(session, category=category, limit=RESULTS_MAX)


def _result_row(article: KbArticle, language: str) -> dict[str, Any]:
    return {
        "id": article.id,
        "title": article.title,
        "summary": article.summary,
        "category": label(articles.CATEGORIES, article.category, language),
        "checked_on": article.checked_on.isoformat(),
    }


def _article_view(article: KbArticle, language: str) -> dict[str, Any]:
    return {**_result_row(article, language), "body": article.body, "sources": article.sources or []}


def _back_link() -> dict[str, str]:
    """Return the search the reader came from, so the article page can link back to its results."""
    query = (request.args.get("q") or "").strip()[:QUERY_MAX]
    return {"q": query} if query else {}
