"""Transactions for idempotent intake, shared by the JSON API and the Twilio webhooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hotline.request_connection import RequestConnection

CONFLICT_RETRIES = 3
Result = TypeVar("Result")


def run_idempotent(runtime: Any, work: Callable[[Session], Result], one_write: bool = False,
                   connection: RequestConnection | None = None) -> Result:
    """Run `work` in a transaction, retrying when a concurrent duplicate won a unique constraint.

    The retry then finds the row the other request committed, so both requests return the same ticket
    and only one was written. `one_write` and `connection` are passed to `Runtime.transaction`.
    """
    for attempt in range(CONFLICT_RETRIES):
        try:
            with runtime.transaction(one_write=one_write, connection=connection) as session:
                return work(session)
        except IntegrityError:
            if attempt == CONFLICT_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
