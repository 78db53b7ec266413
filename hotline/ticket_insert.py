"""Insert a new ticket, its number and every row that belongs to it in one PostgreSQL statement.

Intake through the ORM costs a round trip per table and an UPDATE of the new ticket's row for its number,
and that UPDATE writes a second version of the row into every ticket index. Here data-modifying CTEs take
the day's next number, insert the ticket with it and insert the rows that carry its id, in one statement.
Each table's rows travel as one JSON array, so the statement text is the same for every ticket and
psycopg prepares it once per connection.

The statement locks the day's counter row until the transaction ends, as `tickets.assign_numbers` does,
so callers run it as their last write.
"""

from __future__ import annotations

from functools import cache

import orjson
import psycopg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

from hotline.models import ChecklistItem, Referral, SlaClock, Ticket, TicketEvent
from hotline.rules.versions import store_versions
from hotline.sla.clocks import default_next_check
from hotline.tickets import NewTicket

# The tables whose rows carry the new ticket's id, in the order their rows are inserted.
DEPENDENT_MODELS: tuple[type[SQLModel], ...] = (Referral, SlaClock, ChecklistItem, TicketEvent)
ORDER_KEY = "row_order"
DIALECT = postgresql.dialect()
PREPARER = DIALECT.identifier_preparer


def insert_new_ticket(session: Session, new_ticket: NewTicket, extra_rows: list[SQLModel], tz) -> None:
    """Insert `new_ticket` with its number, its events, clocks and checklist items, and `extra_rows`.

    `extra_rows` are rows of DEPENDENT_MODELS, such as the ticket's Referral. Afterwards the ticket has its
    id and number, and every dependent row has the ticket's id. None of them is added to the session, so
    later changes to them are not saved, and intake runs the statement as its last write. Attaching the
    ticket cost about 40 µs of CPU per referral (estimated from a profile), for nothing that read it.
    """
    parameters = insert_parameters(session, new_ticket, extra_rows, tz)
    ticket_id, number = _execute(session, parameters)
    set_inserted(new_ticket, extra_rows, ticket_id, number)


def insert_parameters(session: Session, new_ticket: NewTicket, extra_rows: list[SQLModel], tz) -> dict[str, str]:
    """Return the statement's parameters: the day, the number's prefix and each table's rows as a JSON array."""
    ticket = new_ticket.ticket
    rows = [*extra_rows, *new_ticket.dependent_rows()]
    # What the ORM's insert hooks do: store the ticket's rule-set version and default each clock's next check.
    if ticket.rule_set_version:
        store_versions(session, {ticket.rule_set_version})
    for clock in new_ticket.clocks:
        default_next_check(clock)
    day = ticket.created_at.astimezone(tz).strftime("%Y%m%d")
    parameters = {"day": day, "number_prefix": f"QP-{day}-", "ticket": _json_rows([ticket], Ticket)}
    by_model: dict[type[SQLModel], list[SQLModel]] = {model: [] for model in DEPENDENT_MODELS}
    for row in rows:
        by_model[type(row)].append(row)
    # The table's name, not the model's __tablename__, which SQLModel computes on every read.
    for model, model_rows in by_model.items():
        parameters[model.__table__.name] = _json_rows(model_rows, model)
    return parameters


def set_inserted(new_ticket: NewTicket, extra_rows: list[SQLModel], ticket_id: int, number: str) -> None:
    """Give the inserted ticket its id and number, and its rows the ticket's id.

    The rows are new and in no session (see `insert_new_ticket`), so the values go straight into each
    instance's fields. `rows.set_fields` does the same after checks that took about 7 µs per row in a
    profile of a referral.
    """
    _store(new_ticket.ticket, {"id": ticket_id, "number": number})
    for row in [*extra_rows, *new_ticket.dependent_rows()]:
        _store(row, {"ticket_id": ticket_id})


def _store(row: SQLModel, values: dict[str, object]) -> None:
    row.__dict__.update(values)
    row.__pydantic_fields_set__.update(values)


def _execute(session: Session, parameters: dict[str, str]) -> tuple[int, str]:
    """Run the statement on the psycopg connection under the session, prepared once per connection.

    SQLAlchemy's exec_driver_sql added about 40 µs of CPU per ticket. A unique violation (a concurrent
    duplicate referral) is raised as SQLAlchemy's IntegrityError, which the intake's retry expects.
    """
    driver = session.connection().connection.driver_connection
    try:
        return driver.execute(_statement(), parameters, prepare=True).fetchone()
    except psycopg.IntegrityError as error:
        raise IntegrityError(_statement(), parameters, error) from error


@cache
def _statement() -> str:
    """Build the statement's text from the tables' columns.

    The text stays under psycopg's MAX_CACHED_STATEMENT_LENGTH (4096 bytes), because psycopg converts the
    placeholders of a longer text again on every execution.
    """
    return f"WITH {insert_ctes()}\nSELECT id, number FROM new_ticket"


@cache
def insert_ctes(gate: str | None = None) -> str:
    """Return the insert's common table expressions, without WITH; `new_ticket` returns the id and number.

    With `gate`, the name of an earlier CTE, the ticket is inserted only when that CTE returns a row.
    To save length, columns are named without their FROM item. The CTEs read besides `given` return only
    `last`, `id` and `number`, so no names clash.
    """
    ticket_columns = _insert_columns(Ticket.__table__, skip=("number",))
    counter_source = "VALUES (%(day)s, 1)" if gate is None else f"SELECT %(day)s, 1 FROM {gate}"
    parts = [
        "counter AS (\n"
        f"INSERT INTO ticketcounter (day, last) {counter_source}\n"
        "ON CONFLICT (day) DO UPDATE SET last = ticketcounter.last + 1 RETURNING last\n"
        "), new_ticket AS (\n"
        f"INSERT INTO ticket (number, {_names(ticket_columns)})\n"
        # Four digits at least, as tickets.next_number writes them; a day past 9999 tickets gets five.
        "SELECT %(number_prefix)s || lpad(last::text, greatest(4, length(last::text)), '0'), "
        f"{_names(ticket_columns)}\n"
        f"FROM counter, {_recordset(Ticket.__table__, ticket_columns, 'ticket')}\n"
        "RETURNING id, number\n"
        ")"
    ]
    for model in DEPENDENT_MODELS:
        table = model.__table__
        columns = _insert_columns(table, skip=("ticket_id",))
        parts.append(
            f", new_{table.name} AS (\n"
            f"INSERT INTO {PREPARER.quote(table.name)} (ticket_id, {_names(columns)})\n"
            f"SELECT new_ticket.id, {_names(columns)}\n"
            f"FROM new_ticket, {_recordset(table, columns, table.name)}\n"
            f"ORDER BY {ORDER_KEY}\n"
            ")"
        )
    return "".join(parts)


def _insert_columns(table: Table, skip: tuple[str, ...]) -> list[str]:
    columns = [column.name for column in table.columns if column.name != "id" and column.name not in skip]
    clashes = set(columns) & {"last", "number"}
    if clashes:
        raise ValueError(f"columns {sorted(clashes)} of {table.name} have the name of a CTE column of the ticket "
                         "insert; qualify the names in ticket_insert._statement")
    return columns


def _names(columns: list[str]) -> str:
    return ", ".join(PREPARER.quote(name) for name in columns)


def _recordset(table: Table, columns: list[str], parameter: str) -> str:
    """Return a FROM item reading the table's rows from the JSON parameter, with the order they were given in.

    The parameter is json, not jsonb. A jsonb parameter is parsed into a tree with every object's keys
    sorted, and each nested value is written back to text for its jsonb column to parse again. In a replay
    of one referral's insert, json cut the server's CPU from about 595 µs to 530 µs.

    Strings are read as text, so the INSERT's assignment to varchar(n) rejects a long value as the ORM's
    INSERT would, instead of a typed read cutting it short.
    """
    definitions = [f"{PREPARER.quote(name)} {_sql_type(table.columns[name].type)}" for name in columns]
    definitions.append(f"{ORDER_KEY} integer")
    return f"json_to_recordset(%({parameter})s::json) AS given({', '.join(definitions)})"


def _sql_type(column_type) -> str:
    """Return the column's PostgreSQL type, with text for every varchar and the short name of timestamptz."""
    compiled = column_type.compile(dialect=DIALECT)
    if compiled.startswith("VARCHAR"):
        return "text"
    return "timestamptz" if compiled == "TIMESTAMP WITH TIME ZONE" else compiled


def _json_rows(rows: list[SQLModel], model: type[SQLModel]) -> str:
    """Serialise rows of `model` as a JSON array of objects, each with its position under ORDER_KEY.

    orjson writes instants in ISO 8601 with their offset, which json_to_recordset reads as timestamptz.
    """
    names = _column_names(model)
    objects = []
    for position, row in enumerate(rows):
        # A new row lacks only fields never set, such as ticket_id, which read as None. Reading them
        # through the attribute instead cost about 10 µs each in SQLAlchemy's default-value events.
        loaded = row.__dict__
        values = {name: loaded.get(name) for name in names}
        values[ORDER_KEY] = position
        objects.append(values)
    return orjson.dumps(objects).decode()


@cache
def _column_names(model: type[SQLModel]) -> tuple[str, ...]:
    return tuple(column.name for column in model.__table__.columns if column.name != "id")
