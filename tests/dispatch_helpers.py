"""Shared set-up for tests of agencies leaving dispatch: the 练塘 pilot agencies and a ticket that goes to them.

The `rotation` fixture that orders those agencies is in conftest.py.
"""

from __future__ import annotations

from datetime import datetime

import time_machine
from sqlmodel import select

from hotline.models import Agency, Offer
from hotline.tickets import create_ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
LIANTANG = "310118103"
FUSHUN = "练塘福顺礼仪服务社"
FUSHUN_PHONE = "+8613900000002"
DIANSHANHU = "上海淀山湖殡葬代理有限公司"


def body_transport_ticket(runtime, at=MONDAY_MORNING, town=LIANTANG) -> int:
    """Create a body-transport ticket in `town` at `at`, which the in-process queue dispatches at once."""
    with time_machine.travel(at, tick=False), runtime.transaction() as session:
        ticket = create_ticket(session, runtime, at, actor="test", channel="referral_api", source="community_worker",
                               category="agency_service", needs=["body_transport"], town_code=town,
                               caller_phone="+8613812345678")
        return ticket.id


def offers_of(runtime, ticket_id) -> list[Offer]:
    with runtime.transaction() as session:
        return session.exec(select(Offer).where(Offer.ticket_id == ticket_id).order_by(Offer.attempt)).all()


def agency_named(runtime, name) -> Agency:
    with runtime.transaction() as session:
        return session.exec(select(Agency).where(Agency.name == name)).one()
