"""The term index of articles and search over it, ranked by the number of query terms an article matches.

An article's terms come from its title, summary and body. A term found in the title counts twice, so
an article about a subject ranks above articles that only mention it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete, func, insert
from sqlmodel import Session, select

from hotline.kb.terms import query_terms, text_terms
from hotline.models import KbArticle, KbTerm


@dataclass(frozen=True)
class SearchHit:
    article: KbArticle
    score: int


def index_article(session: Session, article: KbArticle) -> None:
    """Replace the article's terms with those of its current title, summary and body."""
    session.execute(delete(KbTerm).where(KbTerm.article_id == article.id))
    title_terms = text_terms(article.title)
    other_terms = text_terms(article.summary) | text_terms(article.body)
    rows = [{"article_id": article.id, "term": term, "in_title": term in title_terms}
            for term in sorted(title_terms | other_terms)]
    if rows:
        session.execute(insert(KbTerm), rows)


def search_articles(session: Session, query: str, category: str | None = None, limit: int = 20,
                    offset: int = 0) -> list[SearchHit]:
    """Return published articles matching any term of `query`, the most matches first.

    A query without terms (only punctuation, say) matches nothing. Ties go to the most recently updated.
    """
    terms = query_terms(query)
    if not terms:
        return []

    score = (func.count(KbTerm.term) + func.sum(case((KbTerm.in_title, 1), else_=0))).label("score")
    scores = (select(KbTerm.article_id, score).where(KbTerm.term.in_(terms))
              .group_by(KbTerm.article_id).subquery())
    statement = (
        select(KbArticle, scores.c.score)
        .join(scores, scores.c.article_id == KbArticle.id)
        .where(KbArticle.status == "published")
        .order_by(scores.c.score.desc(), KbArticle.updated_at.desc(), KbArticle.id)
        .offset(offset)
        .limit(limit)
    )
    if category is not None:
        statement = statement.where(KbArticle.category == category)
    return [SearchHit(article, int(value)) for article, value in session.exec(statement).all()]
