"""Optimistic referral intake on PostgreSQL: one statement checks what the plan assumed, and inserts.

An ordinary referral costs three statements: the token lookup, the lookup of an earlier referral with
the same id together with the resident's history, and the insert (hotline.ticket_insert). Nearly every
referral comes with a token this process has authenticated before, is new, and is about a resident with
no open ticket and no recent call. This path plans the ticket on those assumptions and sends one
statement that checks them before it inserts:

- the token has the digest, id and source remembered for it, is not revoked and has the scope referrals:write;
- no referral from the source has the id;
- the resident's phone has no open ticket and no call within the history window.

When a check fails, the statement inserts nothing and the request takes the ordinary path, which
authenticates and reads the history again. A remembered identity (hotline.tokens.remembered) grants
nothing alone, so a revoked token is refused at once. A concurrent duplicate fails on the unique
constraint, as on the ordinary path.

The body is parsed before the token is checked. A body with an error takes the ordinary path, which
authenticates first, so a caller with a bad token still gets 401 and not the body's error.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import psycopg
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hotline import intake, tokens
from hotline.driver_sql import PositionalStatement, driver_statement, fetch_one_positional, positional
from hotline.intake import IntakeResult
from hotline.outbox import schedule_job
from hotline.ticket_insert import insert_ctes, insert_parameters, set_inserted
from hotline.tickets import HISTORY_WINDOW, history_counts

log = logging.getLogger("hotline.intake")

HISTORY_PARAMETERS = ("external_id", "phone", "since", "source")
# The history this path assumes, and the statement checks: no open ticket and no recent call.
NO_HISTORY = history_counts(0, 0)


def take_referral(session: Session, driver: psycopg.Connection, runtime, identity: tokens.TokenIdentity,
                  token_hash: str, body: Any, now: datetime) -> IntakeResult | None:
    """File a new referral under the remembered `identity` in one statement, or return None for the ordinary path.

    The statement runs on `driver`, the autocommit connection under `session`, so the session starts no
    transaction of its own. Such a transaction cost about 40 µs of CPU per referral in SQLAlchemy.
    Raises InputError for a body that fails validation, before anything is sent to the database.
    """
    referral = intake.validate_referral(session, body)
    intake.check_death_time(referral, now)
    new_ticket, referral_row = intake.plan_referral(session, runtime, identity.source, referral, body, identity.id,
                                                    NO_HISTORY, now)
    parameters = insert_parameters(session, new_ticket, [referral_row], runtime.settings.timezone)
    parameters.update(_check_parameters(identity, token_hash, referral, now))

    ticket_id, number, token_valid = _execute(driver, parameters)
    if ticket_id is None:
        if not token_valid:
            tokens.forget(token_hash)
        log.debug("Intake: referral %s/%s failed the optimistic checks (token valid: %s)",
                  identity.source, referral["external_id"], token_valid)
        return None

    set_inserted(new_ticket, [referral_row], ticket_id, number)
    ticket = new_ticket.ticket
    log.info("Intake: referral %s/%s created %s (%s, P%s)", identity.source, referral["external_id"], number,
             ticket.category, ticket.priority)
    if ticket.category == "agency_service":
        schedule_job(session, "dispatch_ticket", ticket_id)
    return IntakeResult(ticket, created=True, new_ticket=new_ticket, external_id=referral["external_id"])


def _check_parameters(identity: tokens.TokenIdentity, token_hash: str, referral: dict[str, Any],
                      now: datetime) -> dict[str, Any]:
    return {
        "token_hash": token_hash,
        "token_id": identity.id,
        "write_scope": tokens.REFERRALS_WRITE,
        "touch_before": now - timedelta(seconds=tokens.TOUCH_INTERVAL_SECONDS),
        "now": now,
        "source": identity.source,
        "external_id": referral["external_id"],
        "phone": referral["resident"]["phone"],
        "since": now - HISTORY_WINDOW,
        **_history_statement().constants,
    }


def _execute(driver: psycopg.Connection, parameters: dict[str, Any]) -> tuple[int | None, str | None, bool]:
    """Run the statement and return the new ticket's id and number, and whether the token is valid.

    The id and number are None when a check failed.
    """
    try:
        token_valid, ticket_id, number = fetch_one_positional(driver, _statement(), parameters)
    except psycopg.IntegrityError as error:
        raise IntegrityError(_statement().text, parameters, error) from error
    return ticket_id, number, token_valid


@cache
def _history_statement():
    return driver_statement(intake.earlier_and_history_query(), HISTORY_PARAMETERS)


@cache
def _statement() -> PositionalStatement:
    """Build the statement: the checks as CTEs, the insert gated on them, and one result row.

    The row contains whether the token is valid and the new ticket's id and number. The `touched` CTE
    records the token's use only when the last one is at least TOUCH_INTERVAL_SECONDS old.
    """
    return positional(
        "WITH token AS (\n"
        "SELECT id FROM apitoken WHERE token_hash = %(token_hash)s AND id = %(token_id)s AND source = %(source)s\n"
        "AND revoked_at IS NULL AND scopes::jsonb ? %(write_scope)s\n"
        "), touched AS (\n"
        "UPDATE apitoken SET last_used_at = %(now)s FROM token WHERE apitoken.id = token.id\n"
        "AND (apitoken.last_used_at IS NULL OR apitoken.last_used_at <= %(touch_before)s) RETURNING apitoken.id\n"
        f"), prior (earlier, open_tickets, calls) AS (\n{_history_statement().text}\n"
        "), gate AS (\n"
        "SELECT 1 FROM token, prior WHERE prior.earlier IS NULL AND prior.open_tickets = 0 AND prior.calls = 0\n"
        f"), {insert_ctes('gate')}\n"
        "SELECT EXISTS (SELECT 1 FROM token), new_ticket.id, new_ticket.number\n"
        "FROM (SELECT 1) AS one LEFT JOIN new_ticket ON true"
    )
