"""An ascending sort key with NULLs last that an index serves on PostgreSQL and on SQLite alike.

PostgreSQL's ascending indexes keep NULLs last, so there the key is `column ASC NULLS LAST`, and an
index on the plain column serves that order. SQLite's indexes keep NULLs first and have no NULLS LAST
option, so there the key is two terms, `column IS NULL, column`, and an index needs the same two terms.
Use the same `NullsLast` in the index and in ORDER BY, so that both render the same terms on each backend.
"""

from __future__ import annotations

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class NullsLast(ColumnElement):
    """Ascending order of `column`, with NULLs after every value. Use it as it is, without .asc() or .desc()."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column):
        self.column = coercions.expect(roles.ExpressionElementRole, column)
        self.type = self.column.type


@compiles(NullsLast)
def _compile_nulls_last(element: NullsLast, compiler, **kw) -> str:
    return f"{compiler.process(element.column, **kw)} ASC NULLS LAST"


@compiles(NullsLast, "sqlite")
def _compile_nulls_last_sqlite(element: NullsLast, compiler, **kw) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} IS NULL, {column}"
