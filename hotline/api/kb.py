"""JSON API of the information service (便民服务信息): published knowledge articles, searchable in Chinese.

Staff tokens and referral-source tokens read it; 社区云 shows the articles in its 殡葬便民服务 module.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request, url_for

from hotline.api.auth import STAFF_ROLES, require
from hotline.api.errors import ApiError
from hotline.api.params import int_arg
from hotline.clock import isoformat
from hotline.i18n import current_language
from hotline.kb import articles, search
from hotline.models import KbArticle
from hotline.validation import N_, InputError, unknown_value
from hotline.vocabulary import label

bp = Blueprint("api_kb", __name__, url_prefix="/api/v1/kb")

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
QUERY_MAX = 100


def runtime():
    return current_app.extensions["hotline"]


@bp.get("/articles")
@require(source=True, roles=STAFF_ROLES)
def list_articles():
    """List published articles; with `q`, only those matching it, the most matches first."""
    query = (request.args.get("q") or "").strip()
    if len(query) > QUERY_MAX:
        raise InputError("too_long", N_("Field %(field)s is longer than %(limit)s characters."), field="q",
                         limit=QUERY_MAX)
    category = _category_arg()
    limit = int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_arg("offset", 0, 0, 100_000)
    language = current_language()

    with runtime().transaction() as session:
        if query:
            hits = search.search_articles(session, query, category=category, limit=limit + 1, offset=offset)
            items = [{**article_json(hit.article, language), "score": hit.score} for hit in hits]
        else:
            rows = articles.list_articles(session, category=category, limit=limit + 1, offset=offset)
            items = [article_json(article, language) for article in rows]
    return jsonify({"items": items[:limit], "next": _next_url(offset + limit, len(items) > limit)})


@bp.get("/articles/<int:article_id>")
@require(source=True, roles=STAFF_ROLES)
def get_article(article_id: int):
    with runtime().transaction() as session:
        article = session.get(KbArticle, article_id)
        if article is None or article.status != "published":
            raise ApiError(404, "not_found", N_("Article %(id)s was not found."), field="id", id=article_id)
        return jsonify({**article_json(article, current_language()), "body": article.body})


def article_json(article: KbArticle, language: str) -> dict[str, Any]:
    """Build an article without its body, as lists show it."""
    return {
        "id": article.id,
        "category": article.category,
        "category_label": label(articles.CATEGORIES, article.category, language),
        "title": article.title,
        "summary": article.summary,
        "sources": article.sources or [],
        "checked_on": article.checked_on.isoformat(),
        "version": article.version,
        "updated_at": isoformat(article.updated_at),
        "url": url_for("api_kb.get_article", article_id=article.id, _external=True),
    }


def _category_arg() -> str | None:
    category = request.args.get("category") or None
    if category is not None and category not in articles.CATEGORIES:
        raise unknown_value("category", category, articles.CATEGORIES)
    return category


def _next_url(offset: int, more: bool) -> str | None:
    if not more:
        return None
    args = request.args.to_dict()
    args["offset"] = str(offset)
    return url_for("api_kb.list_articles", _external=True, **args)
