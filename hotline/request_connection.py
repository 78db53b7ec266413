"""One PostgreSQL connection per API request, checked by the request's first statement instead of a ping.

The main engine pings every pooled connection at checkout (hotline.store), one round trip each time. An
API request on PostgreSQL instead takes one connection from a second pool without that ping, and its
first statement, the token lookup, checks that the connection is alive. When that statement finds the
connection lost, the pool is recycled, because a server that dropped one connection has usually dropped
the others too, and the statement runs once more on a new connection. Every later statement of the
request, the referral's included, runs on the same connection in autocommit mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, Engine

log = logging.getLogger("hotline.request_connection")

Result = TypeVar("Result")


class RequestConnection:
    """A connection checked out for one request; `first_statement` must run before anything else on it."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self.connection: Connection = engine.connect()

    @property
    def driver(self) -> psycopg.Connection:
        return self.connection.connection.driver_connection

    def first_statement(self, run: Callable[[psycopg.Connection], Result]) -> Result:
        """Return `run(driver)`, and when the connection is found lost, replace it and call `run` again.

        `run` must be safe to repeat, because the server may have done its work before the connection dropped.
        """
        try:
            return run(self.driver)
        except psycopg.OperationalError as error:
            if not self.driver.broken:
                raise
            log.warning("Request connection: lost at its first statement (%s); recycling the pool and retrying", error)
        self._replace()
        return run(self.driver)

    def close(self) -> None:
        self.connection.close()

    def _replace(self) -> None:
        self.connection.invalidate()
        self.connection.close()
        self._engine.dispose()
        self.connection = self._engine.connect()
