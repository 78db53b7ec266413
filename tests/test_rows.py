"""new_row builds the same transient object as a table model's constructor, and the ORM inserts it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from hotline.models import ChecklistItem, Referral, SlaClock, Ticket, TicketEvent
from hotline.rows import new_row, set_fields

AT = datetime(2026, 12, 7, 1, 30, tzinfo=UTC)
CASES = [
    (Ticket, {"number": "QP-20261207-0001", "channel": "referral_api", "source": "shequyun",
              "category": "consultation", "needs": [], "flags": ["low_income"], "created_at": AT, "updated_at": AT}),
    (TicketEvent, {"ticket_id": None, "at": AT, "actor": "system", "kind": "created", "data": {"a": 1}}),
    (SlaClock, {"target": "first_response", "policy": "default", "calendar": "workday", "duration_seconds": 60,
                "started_at": AT, "due_at": AT}),
    (Referral, {"source": "shequyun", "external_id": "SG-1", "payload": {"x": 1}, "received_at": AT}),
    (ChecklistItem, {"code": "bank", "position": 1, "title": "银行", "title_en": "Bank", "office": "银行网点",
                     "documents": ["死亡医学证明"], "status": "todo", "created_at": AT}),
]


def _fields(instance) -> dict:
    return {key: value for key, value in instance.__dict__.items() if key != "_sa_instance_state"}


@pytest.mark.parametrize(("model", "values"), CASES, ids=[model.__name__ for model, _ in CASES])
def test_new_row_matches_constructor(model, values):
    built = model(**values)
    lean = new_row(model, **values)

    assert _fields(lean) == _fields(built)
    assert lean.__pydantic_fields_set__ == built.__pydantic_fields_set__
    assert type(lean) is model


def test_new_row_defaults_are_not_shared():
    first = new_row(Ticket, number="a", channel="phone", source="resident", category="callback")
    second = new_row(Ticket, number="b", channel="phone", source="resident", category="callback")

    first.tags.append("callback_needed")

    assert second.tags == []
    assert first.status == "new"
    assert first.priority == 3


def test_new_row_rejects_unknown_field():
    with pytest.raises(TypeError, match="colour"):
        new_row(Ticket, colour="red")


def test_new_row_first_in_process_assignable():
    # Run in a new interpreter, where new_row is the first use of the models, as in a new worker process.
    program = ("from datetime import UTC, datetime\n"
               "from hotline.models import SlaClock\n"
               "from hotline.rows import new_row\n"
               "at = datetime(2026, 12, 7, tzinfo=UTC)\n"
               "clock = new_row(SlaClock, target='resolution', policy='p', calendar='workday', duration_seconds=1,"
               " started_at=at, due_at=at)\n"
               "clock.state = 'paused'\n"
               "print(clock.state)\n")

    completed = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "paused"


def test_new_row_inserted_by_orm(runtime):
    with runtime.transaction() as session:
        ticket = new_row(Ticket, number="QP-20261207-0001", channel="phone", source="resident",
                         category="callback", created_at=AT, updated_at=AT)
        session.add(ticket)
        session.flush()
        ticket.priority = 2
        session.add(new_row(TicketEvent, ticket_id=ticket.id, at=AT, actor="system", kind="created"))

    with runtime.transaction() as session:
        stored = session.exec(select(Ticket)).one()
        event = session.exec(select(TicketEvent)).one()

    assert stored.number == "QP-20261207-0001"
    assert stored.priority == 2
    assert stored.tags == []
    assert stored.created_at == AT
    assert event.ticket_id == stored.id


def test_set_fields_new_row_inserted(runtime):
    ticket = new_row(Ticket, number="QP-20261207-0001", channel="phone", source="resident", category="callback",
                     created_at=AT, updated_at=AT)

    set_fields(ticket, priority=1, tags=["urgent"])
    with runtime.transaction() as session:
        session.add(ticket)

    with runtime.transaction() as session:
        stored = session.exec(select(Ticket)).one()
    assert stored.priority == 1
    assert stored.tags == ["urgent"]
    assert {"priority", "tags"} <= ticket.__pydantic_fields_set__


def test_set_fields_stored_row_updated(runtime):
    with runtime.transaction() as session:
        session.add(new_row(Ticket, number="QP-20261207-0001", channel="phone", source="resident",
                            category="callback", created_at=AT, updated_at=AT))

    with runtime.transaction() as session:
        set_fields(session.exec(select(Ticket)).one(), priority=1)

    with runtime.transaction() as session:
        stored = session.exec(select(Ticket)).one()
    assert stored.priority == 1


def test_set_fields_rejects_unknown_field():
    ticket = new_row(Ticket, number="a", channel="phone", source="resident", category="callback")

    with pytest.raises(TypeError, match="colour"):
        set_fields(ticket, colour="red")
