"""Tables written as CSV for Excel (UTF-8 with a byte order mark) or as XLSX workbooks (openpyxl).

Excel opens a CSV file as UTF-8 only when it starts with a byte order mark. Without one it guesses the
system code page, and Chinese text turns into mojibake. Datetime cells must be naive because they are
written as the wall-clock time they contain, so callers convert to the hotline's zone first.

Text such as a committee name comes from referrals, so a cell starting like a formula (=, +, -, @) is
written as text: prefixed with an apostrophe in CSV, and stored with the string type in XLSX.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

BOM = "\ufeff"
TIME_FORMAT = "%Y-%m-%d %H:%M"
EXCEL_TIME_FORMAT = "yyyy-mm-dd hh:mm"
# Excel rejects sheet titles longer than 31 characters or containing any of these.
SHEET_TITLE_MAX = 31
SHEET_TITLE_FORBIDDEN = "[]:*?/\\"
COLUMN_WIDTH_MAX = 40
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Table:
    """A titled table: one header row and rows of str, int, float, naive datetime or None cells."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]] = field(default_factory=list)


def to_csv(tables: Sequence[Table]) -> bytes:
    """Write the tables as one CSV document, UTF-8 with a BOM and CRLF line ends.

    A single table is written as header and rows alone. Several tables are written one after another,
    each preceded by its title on a line of its own and followed by an empty line.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    several = len(tables) > 1
    for table in tables:
        if several:
            writer.writerow([table.title])
        writer.writerow(table.headers)
        writer.writerows([_csv_cell(value) for value in row] for row in table.rows)
        if several:
            writer.writerow([])
    return (BOM + buffer.getvalue()).encode("utf-8")


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_xlsx(tables: Sequence[Table]) -> bytes:
    """Write one worksheet per table, named after its title, with a bold frozen header row."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    used: set[str] = set()
    for table in tables:
        sheet = workbook.create_sheet(_sheet_title(table.title, used))
        sheet.append(list(table.headers))
        for row_number, row in enumerate(table.rows, start=2):
            for column, value in enumerate(row, start=1):
                cell = sheet.cell(row=row_number, column=column, value=value)
                if isinstance(value, str) and value.startswith(FORMULA_STARTS):
                    cell.data_type = "s"
        _format_sheet(sheet, table)

    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _sheet_title(title: str, used: set[str]) -> str:
    cleaned = "".join(" " if character in SHEET_TITLE_FORBIDDEN else character for character in title).strip()
    cleaned = cleaned[:SHEET_TITLE_MAX] or "Sheet"
    candidate, number = cleaned, 2
    while candidate.lower() in used:
        suffix = f" ({number})"
        candidate = cleaned[:SHEET_TITLE_MAX - len(suffix)] + suffix
        number += 1
    used.add(candidate.lower())
    return candidate


def _format_sheet(sheet, table: Table) -> None:
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet.freeze_panes = "A2"
    for column, header in enumerate(table.headers, start=1):
        values = [header] + [row[column - 1] for row in table.rows if column - 1 < len(row)]
        width = max(_display_width(value) for value in values)
        sheet.column_dimensions[get_column_letter(column)].width = min(width + 2, COLUMN_WIDTH_MAX)
        if any(isinstance(value, datetime) for value in values):
            for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
                cell.number_format = EXCEL_TIME_FORMAT


def _display_width(value: Any) -> int:
    """Estimate a cell's width in Excel character units, counting a CJK character as two."""
    text = _csv_cell(value)
    text = text if isinstance(text, str) else str(text)
    return sum(2 if ord(character) > 0x2E80 else 1 for character in text)
