"""Knowledge-article pages: every staff member reads and searches, admins write; each save is a new version.

The search panel of the ticket page fetches its results from `/kb/panel`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_login import current_user, login_required
from sqlmodel import Session, select

from hotline.clock import local, now
from hotline.i18n import current_language
from hotline.kb import articles, search
from hotline.models import KbArticle, KbArticleVersion, User
from hotline.validation import InputError, required
from hotline.vocabulary import label
from hotline.web import display
from hotline.web.auth import roles_required

log = logging.getLogger("hotline.web.kb")

bp = Blueprint("web_kb", __name__, url_prefix="/kb")

EDITORS = ("admin",)
PANEL_RESULTS = 5
LIST_RESULTS = 50
QUERY_MAX = 100
# Actor of the articles `hotline demo` seeds.
SEED_ACTOR = "seed"


def runtime():
    return current_app.extensions["hotline"]


def _is_editor() -> bool:
    return current_user.role in EDITORS


@bp.get("/")
@login_required
def article_list():
    query = (request.args.get("q") or "").strip()[:QUERY_MAX]
    category = request.args.get("category") if request.args.get("category") in articles.CATEGORIES else None
    language = current_language()
    with runtime().transaction() as session:
        if query:
            rows = [hit.article for hit in search.search_articles(session, query, category=category,
                                                                   limit=LIST_RESULTS)]
        else:
            rows = articles.list_articles(session, category=category, include_withdrawn=_is_editor())
    return render_template(
        "kb_list.html", query=query, category=category, language=language, may_edit=_is_editor(),
        rows=[_summary_row(article, language) for article in rows],
        categories=[(code, label(articles.CATEGORIES, code, language)) for code in articles.CATEGORIES],
    )


@bp.get("/panel")
@login_required
def panel():
    """The results of the search panel as an HTML fragment."""
    query = (request.args.get("q") or "").strip()[:QUERY_MAX]
    language = current_language()
    rows = []
    if query:
        with runtime().transaction() as session:
            hits = search.search_articles(session, query, limit=PANEL_RESULTS)
            rows = [_summary_row(hit.article, language) for hit in hits]
    return render_template("_kb_results.html", query=query, rows=rows)


@bp.get("/<int:article_id>")
@login_required
def article_page(article_id: int):
    language = current_language()
    with runtime().transaction() as session:
        article = _article_or_404(session, article_id)
        names = _user_names(session)
    return render_template("kb_article.html", article=_article_view(article, names, language), language=language,
                           may_edit=_is_editor(), old_version=False)


@bp.get("/<int:article_id>/history")
@login_required
def history(article_id: int):
    language = current_language()
    with runtime().transaction() as session:
        article = _article_or_404(session, article_id)
        names = _user_names(session)
        versions = [_version_row(version, names, language) for version in articles.versions_of(session, article.id)]
    return render_template("kb_history.html", article=article, versions=versions, language=language)


@bp.get("/<int:article_id>/versions/<int:version>")
@login_required
def version_page(article_id: int, version: int):
    language = current_language()
    with runtime().transaction() as session:
        article = _article_or_404(session, article_id)
        saved = articles.find_version(session, article.id, version)
        if saved is None:
            abort(404)
        names = _user_names(session)
    view = _article_view(saved, names, language)
    view.update(id=article.id, current_version=article.version)
    return render_template("kb_article.html", article=view, language=language, may_edit=False, old_version=True)


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*EDITORS)
def new_article():
    if request.method == "GET":
        return _render_form(None, {"checked_on": local(now(), runtime().settings.timezone).date().isoformat()}, {})
    fields, errors, note = _read_form()
    if errors:
        return _render_form(None, request.form, errors)
    with runtime().transaction() as session:
        article = articles.create_article(session, fields, current_user.actor, now(), change_note=note)
        article_id = article.id
    flash(gettext("Article saved as version %(version)s.", version=1), "success")
    return redirect(url_for("web_kb.article_page", article_id=article_id))


@bp.route("/<int:article_id>/edit", methods=["GET", "POST"])
@roles_required(*EDITORS)
def edit_article(article_id: int):
    with runtime().transaction() as session:
        article = _article_or_404(session, article_id)
    if request.method == "GET":
        return _render_form(article, _form_values(article), {})

    fields, errors, note = _read_form()
    base_version = request.form.get("base_version", type=int)
    if base_version is None:
        errors["form"] = required("base_version")
    if errors:
        return _render_form(article, request.form, errors)
    try:
        with runtime().transaction() as session:
            saved = articles.update_article(session, article_id, base_version, fields, current_user.actor, now(),
                                            change_note=note)
            version = saved.version
    except InputError as error:
        return _render_form(article, request.form, {error.field or "form": error}, http_status=error.status)
    flash(gettext("Article saved as version %(version)s.", version=version), "success")
    return redirect(url_for("web_kb.article_page", article_id=article_id))


def _read_form() -> tuple[articles.ArticleFields | None, dict[str, InputError], str | None]:
    today = local(now(), runtime().settings.timezone).date()
    fields, errors = articles.parse_article_form(request.form, today)
    note = None
    try:
        note = articles.parse_change_note(request.form)
    except InputError as error:
        errors["change_note"] = error
    return fields, errors, note


def _render_form(article: KbArticle | None, values, errors: dict[str, InputError], http_status: int | None = None):
    language = current_language()
    messages = {field: gettext(error.template, **error.params) for field, error in errors.items()}
    page = render_template(
        "kb_form.html", article=article, values=values, errors=messages, language=language,
        categories=[(code, label(articles.CATEGORIES, code, language)) for code in articles.CATEGORIES],
        statuses=[(code, label(articles.ARTICLE_STATUSES, code, language)) for code in articles.ARTICLE_STATUSES],
    )
    return page, http_status or (422 if errors else 200)


def _form_values(article: KbArticle) -> dict[str, Any]:
    fields = articles.fields_of(article)
    return {"category": fields.category, "title": fields.title, "summary": fields.summary, "body": fields.body,
            "sources": articles.sources_text(fields), "checked_on": fields.checked_on.isoformat(),
            "status": fields.status, "base_version": article.version}


def _article_or_404(session: Session, article_id: int) -> KbArticle:
    article = session.get(KbArticle, article_id)
    if article is None or (article.status != "published" and not _is_editor()):
        abort(404)
    return article


def _user_names(session: Session) -> dict[int, str]:
    return {user.id: user.display_name for user in session.exec(select(User)).all()}


def _summary_row(article: KbArticle, language: str) -> dict[str, Any]:
    return {
        "id": article.id,
        "title": article.title,
        "summary": article.summary,
        "category": label(articles.CATEGORIES, article.category, language),
        "checked_on": article.checked_on.isoformat(),
        "withdrawn": article.status != "published",
    }


def _article_view(article: KbArticle | KbArticleVersion, names: dict[int, str], language: str) -> dict[str, Any]:
    tz = runtime().settings.timezone
    is_version = isinstance(article, KbArticleVersion)
    saved_by = article.saved_by if is_version else article.updated_by
    saved_at = article.saved_at if is_version else article.updated_at
    return {
        "id": article.article_id if is_version else article.id,
        "version": article.version,
        "current_version": article.version,
        "title": article.title,
        "summary": article.summary,
        "body": article.body,
        "sources": article.sources or [],
        "category": label(articles.CATEGORIES, article.category, language),
        "status": label(articles.ARTICLE_STATUSES, article.status, language),
        "withdrawn": article.status != "published",
        "checked_on": article.checked_on.isoformat(),
        "saved_by": _actor_name(saved_by, names, language),
        "saved_at": display.show_time(saved_at, tz),
    }


def _actor_name(actor: str, names: dict[int, str], language: str) -> str:
    if actor == SEED_ACTOR:
        return gettext("Initial data")
    return display.actor_text(actor, names, {}, language)


def _version_row(version: KbArticleVersion, names: dict[int, str], language: str) -> dict[str, Any]:
    return {
        "version": version.version,
        "title": version.title,
        "status": label(articles.ARTICLE_STATUSES, version.status, language),
        "saved_by": _actor_name(version.saved_by, names, language),
        "saved_at": display.show_time(version.saved_at, runtime().settings.timezone),
        "change_note": version.change_note or "",
    }
