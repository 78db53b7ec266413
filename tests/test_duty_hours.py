"""Agency duty hours: dispatch offers a ticket only to agencies on duty at that moment, local time."""

from __future__ import annotations

from datetime import datetime

import pytest
from dispatch_helpers import LIANTANG, body_transport_ticket, offers_of
from sqlmodel import select

from hotline.agencies import on_duty
from hotline.dispatch import targets
from hotline.models import Agency, Ticket

MONDAY_EVENING = datetime.fromisoformat("2026-12-07T21:30:00+08:00")
MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")


@pytest.mark.parametrize(("hours", "clock", "expected"), [
    ("08:00-20:00", "08:00", True),
    ("08:00-20:00", "19:59", True),
    ("08:00-20:00", "20:00", False),
    ("08:00-20:00", "07:59", False),
    ("20:00-08:00", "23:30", True),
    ("20:00-08:00", "07:59", True),
    ("20:00-08:00", "08:00", False),
    ("20:00-08:00", "12:00", False),
    ("00:00-24:00", "00:00", True),
    ("00:00-24:00", "23:59", True),
    (None, "03:00", True),
])
def test_on_duty_window(hours, clock, expected):
    agency = Agency(name="测试机构", kind="agency", contact_phone="+8613900000009", duty_hours=hours)
    local_now = datetime.fromisoformat(f"2026-12-07T{clock}:00+08:00")

    assert on_duty(agency, local_now) is expected


def _set_pilot_hours(runtime, hours):
    with runtime.transaction() as session:
        for agency in session.exec(select(Agency).where(Agency.kind == "agency")).all():
            agency.duty_hours = hours
            session.add(agency)


def _kind_of_offer(runtime, ticket_id):
    [offer] = offers_of(runtime, ticket_id)
    with runtime.transaction() as session:
        return session.get(Agency, offer.agency_id).kind


def test_off_duty_agency_passed_over(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")

    ticket_id = body_transport_ticket(runtime, at=MONDAY_EVENING, town=LIANTANG)

    assert _kind_of_offer(runtime, ticket_id) == "funeral_home"
    [offer] = offers_of(runtime, ticket_id)
    assert "均不在值班时间" in offer.reason


def test_on_duty_agency_offered(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")

    ticket_id = body_transport_ticket(runtime, at=MONDAY_MORNING, town=LIANTANG)

    assert _kind_of_offer(runtime, ticket_id) == "agency"


def test_night_shift_agency_offered_at_night(runtime, seeded):
    _set_pilot_hours(runtime, "20:00-08:00")

    ticket_id = body_transport_ticket(runtime, at=MONDAY_EVENING, town=LIANTANG)

    assert _kind_of_offer(runtime, ticket_id) == "agency"


def test_standings_name_off_duty(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")
    ticket_id = body_transport_ticket(runtime, at=MONDAY_EVENING, town=LIANTANG)

    with runtime.transaction() as session:
        ticket = session.get(Ticket, ticket_id)
        standings = targets.agency_standings(session, runtime.component("dispatch"), ticket, MONDAY_EVENING,
                                             tried=set())

    pilots = [standing for standing in standings if standing.agency.kind == "agency"]
    assert pilots
    assert all("off_duty" in standing.problems for standing in pilots)
    home = next(standing for standing in standings if standing.agency.kind == "funeral_home")
    assert "off_duty" not in home.problems
