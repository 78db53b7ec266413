"""Row ids in URLs and bodies: integers the id columns can hold, so a larger one is a 404 or 422, not a 500.

Every id column is INTEGER, which PostgreSQL limits to 2^31 - 1; a larger value made psycopg raise
NumericValueOutOfRange (and SQLite OverflowError from 2^63), which the caller got as a 500.
"""

from __future__ import annotations

from werkzeug.routing import IntegerConverter

MAX_ROW_ID = 2**31 - 1


class RowIdConverter(IntegerConverter):
    """Werkzeug's `int` converter limited to MAX_ROW_ID, so a route does not match a larger number."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ROW_ID,  # noqa: A002
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def is_row_id(value: object) -> bool:
    """Return whether `value` is an int (not a bool) that an id column can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ROW_ID
