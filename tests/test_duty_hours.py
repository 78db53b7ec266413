"""Agency duty hours: dispatch offers a ticket only to agencies on duty at that moment, local time."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import time_machine
from dispatch_helpers import LIANTANG, body_transport_ticket, offers_of
from sqlmodel import select

from hotline.agencies import duty_ends_at, on_duty
from hotline.dispatch import offers, targets
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


@pytest.mark.parametrize(("hours", "clock", "expected"), [
    ("08:00-20:00", "19:50:30", "2026-12-07T20:00:00+08:00"),
    ("08:00-20:00", "08:00:00", "2026-12-07T20:00:00+08:00"),
    ("20:00-08:00", "23:30:00", "2026-12-08T08:00:00+08:00"),
    ("20:00-08:00", "07:59:00", "2026-12-07T08:00:00+08:00"),
    ("07:00-24:00", "23:59:00", "2026-12-08T00:00:00+08:00"),
    ("00:00-24:00", "23:59:00", None),
    ("08:00-20:00", "20:00:00", None),
    (None, "03:00:00", None),
])
def test_duty_ends_at(hours, clock, expected):
    agency = Agency(name="测试机构", kind="agency", contact_phone="+8613900000009", duty_hours=hours)
    local_now = datetime.fromisoformat(f"2026-12-07T{clock}+08:00")

    ends = duty_ends_at(agency, local_now)

    assert ends == (None if expected is None else datetime.fromisoformat(expected))


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


def test_offer_ends_with_duty_hours(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")
    at = datetime.fromisoformat("2026-12-07T19:50:00+08:00")

    ticket_id = body_transport_ticket(runtime, at=at, town=LIANTANG)

    [offer] = offers_of(runtime, ticket_id)
    assert _kind_of_offer(runtime, ticket_id) == "agency"
    assert offer.accept_by == datetime.fromisoformat("2026-12-07T20:00:00+08:00")
    assert "值班至 20:00" in offer.reason


def test_offer_in_last_seconds_of_duty(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")
    at = datetime.fromisoformat("2026-12-07T19:59:50+08:00")

    ticket_id = body_transport_ticket(runtime, at=at, town=LIANTANG)

    [offer] = offers_of(runtime, ticket_id)
    assert offer.accept_by == at + timedelta(seconds=offers.MIN_RESPONSE_SECONDS)


def test_offer_within_duty_keeps_timeout(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")

    ticket_id = body_transport_ticket(runtime, at=MONDAY_MORNING, town=LIANTANG)

    [offer] = offers_of(runtime, ticket_id)
    timeout = runtime.component("dispatch").offer_timeout_seconds
    assert offer.accept_by == MONDAY_MORNING + timedelta(seconds=timeout)
    assert "值班至" not in offer.reason


def test_duty_end_moves_offer_to_funeral_home(runtime, seeded):
    _set_pilot_hours(runtime, "08:00-20:00")
    ticket_id = body_transport_ticket(runtime, at=datetime.fromisoformat("2026-12-07T19:50:00+08:00"),
                                      town=LIANTANG)
    duty_end = datetime.fromisoformat("2026-12-07T20:00:00+08:00")

    with time_machine.travel(duty_end, tick=False):
        expired = offers.expire_offers(runtime, duty_end)

    first, second = offers_of(runtime, ticket_id)
    assert expired == 1
    assert first.state == "timed_out"
    with runtime.transaction() as session:
        assert session.get(Agency, second.agency_id).kind == "funeral_home"


def test_response_window_across_dst_end():
    berlin = ZoneInfo("Europe/Berlin")
    agency = Agency(name="测试机构", kind="agency", contact_phone="+8613900000009", duty_hours="18:00-03:00",
                    capacity=2)
    target = SimpleNamespace(description="测试目标", timeout_seconds=3600)
    choice = SimpleNamespace(target=target, candidate=SimpleNamespace(agency=agency, active_jobs=0), skipped=())
    # The first 02:55 of the night the clocks go back: 65 minutes remain until 03:00 comes again.
    local_now = datetime(2026, 10, 25, 2, 55, tzinfo=berlin)

    seconds, _ = offers._response_window(choice, local_now)

    assert seconds == 3600
