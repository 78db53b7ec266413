"""Run the hottest SELECTs straight on psycopg on PostgreSQL, each prepared once per connection.

Executing a statement through SQLAlchemy's Connection costs about 90 µs of CPU beyond psycopg's own work
(2-CPU VM, SQLAlchemy 2.1): the cache key, the execution context and the result wrapper. Intake runs
few statements per request, so for its lookups that overhead is a large share. Statements are written
with SQLAlchemy as usual and compiled here once for PostgreSQL; an IN list of constant values is
expanded at compile time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Executable

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class DriverStatement:
    """A statement's PostgreSQL text with %(name)s placeholders, and the values it binds itself."""

    text: str
    constants: dict[str, Any]


@cache
def driver_statement(statement: Executable, parameter_names: tuple[str, ...]) -> DriverStatement:
    """Compile `statement`, whose caller-supplied parameters are `parameter_names`, for psycopg."""
    compiled = statement.compile(dialect=postgresql.dialect())
    expanded = compiled.construct_expanded_state(dict.fromkeys(parameter_names))
    constants = {name: value for name, value in expanded.parameters.items() if name not in parameter_names}
    return DriverStatement(expanded.statement, constants)


def fetch_one(connection: Connection, statement: Executable, parameters: Mapping[str, Any]) -> tuple | None:
    """Run a SELECT on the psycopg connection under `connection` and return its first row as a tuple."""
    prepared = driver_statement(statement, tuple(sorted(parameters)))
    driver = connection.connection.driver_connection
    return driver.execute(prepared.text, {**prepared.constants, **parameters}, prepare=True).fetchone()


@dataclass(frozen=True)
class PositionalStatement:
    """A statement's text with $1, $2, ... placeholders, and the parameter name behind each position."""

    text: str
    names: tuple[str, ...]

    def values(self, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(parameters[name] for name in self.names)


def positional(text: str) -> PositionalStatement:
    """Turn the %(name)s placeholders of `text` into $n, the same name always into the same position.

    psycopg caches its conversion of a statement's placeholders only for texts up to 4096 bytes
    (MAX_CACHED_STATEMENT_LENGTH). A longer text converted here once runs through a RawCursor unconverted.
    """
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    converted = PLACEHOLDER.sub(number, text)
    if "%" in converted:
        raise ValueError("the statement has a % that is not a %(name)s placeholder")
    return PositionalStatement(converted, tuple(names))


def fetch_one_positional(driver: psycopg.Connection, statement: PositionalStatement,
                         parameters: Mapping[str, Any]) -> tuple | None:
    """Run `statement` on `driver`, prepared once per connection, and return its first row."""
    with psycopg.RawCursor(driver) as cursor:
        cursor.execute(statement.text, statement.values(parameters), prepare=True)
        return cursor.fetchone()
