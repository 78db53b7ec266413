"""The dispatch fairness report, in the API and on the command line."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine
from click.testing import CliRunner
from sqlmodel import select

from hotline.cli import main
from hotline.dispatch import offers
from hotline.dispatch.manual import cancel_offer, dispatch_by_hand
from hotline.models import Agency, Offer, Ticket
from hotline.reports.fairness import parse_since
from hotline.tickets import create_ticket

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
LIANTANG = "310118103"
FUSHUN = "练塘福顺礼仪服务社"
DIANSHANHU = "上海淀山湖殡葬代理有限公司"
FUNERAL_HOME = "青浦区殡仪馆接运服务队"


def _ticket(runtime, at):
    with runtime.transaction() as session:
        ticket = create_ticket(session, runtime, at, actor="test", channel="referral_api", source="community_worker",
                               category="agency_service", needs=["body_transport"], town_code=LIANTANG,
                               caller_phone="+8613812345678")
    return ticket.id


def _latest_offer(runtime, ticket_id):
    with runtime.transaction() as session:
        return session.exec(select(Offer).where(Offer.ticket_id == ticket_id).order_by(Offer.attempt.desc())).first()


def _agency_id(runtime, name):
    with runtime.transaction() as session:
        return session.exec(select(Agency.id).where(Agency.name == name)).one()


@pytest.fixture
def week_of_offers(runtime, seeded):
    """Tickets in 练塘镇: one accepted after 6 minutes; one declined for lack of a vehicle, passed on to the
    other pilot agency, withdrawn there and offered to the funeral home team by hand; and one offer from 40
    days ago that a 7-day report leaves out. Return the names of the accepting and the declining agency."""
    with time_machine.travel(MONDAY_MORNING - timedelta(days=40), tick=False):
        _ticket(runtime, MONDAY_MORNING - timedelta(days=40))

    with time_machine.travel(MONDAY_MORNING, tick=False):
        accepted = _ticket(runtime, MONDAY_MORNING)
        declined = _ticket(runtime, MONDAY_MORNING)
    accepting_offer, declining_offer = _latest_offer(runtime, accepted), _latest_offer(runtime, declined)
    offers.answer_offer(runtime, accepting_offer.id, True, "agency:test", None, MONDAY_MORNING + timedelta(minutes=6))
    offers.answer_offer(runtime, declining_offer.id, False, "agency:test", "车辆都在外面",
                        MONDAY_MORNING + timedelta(minutes=2))

    with time_machine.travel(MONDAY_MORNING + timedelta(minutes=3), tick=False):
        at = MONDAY_MORNING + timedelta(minutes=3)
        attempt = _latest_offer(runtime, declined).attempt
        funeral_home = _agency_id(runtime, FUNERAL_HOME)
        with runtime.transaction() as session:
            ticket = session.get(Ticket, declined)
            cancel_offer(session, runtime, ticket, attempt, "user:1", "家属改约", at)
            dispatch_by_hand(session, runtime, ticket, funeral_home, "user:1", "家属要求", at)
    with runtime.transaction() as session:
        return session.get(Agency, accepting_offer.agency_id).name, session.get(Agency, declining_offer.agency_id).name


@time_machine.travel(MONDAY_MORNING + timedelta(hours=1), tick=False)
def test_fairness_api_counts_each_agency(client, seeded, week_of_offers):
    response = client.get("/api/v1/agencies/fairness?since=7d",
                          headers={"Authorization": f"Bearer {seeded['supervisor']}", "Accept-Language": "zh-CN"})

    assert response.status_code == 200
    report = response.get_json()
    assert report["first_day"] == "2026-12-01"
    assert report["start"] == "2026-12-01T00:00:00+08:00"
    rows = {row["name"]: row for row in report["items"]}
    accepting, declining = week_of_offers
    assert {accepting, declining} == {FUSHUN, DIANSHANHU}, "the two pilot agencies of 练塘镇 took turns"
    assert (rows[accepting]["offers"], rows[accepting]["accepted"], rows[accepting]["cancelled"]) == (2, 1, 1)
    assert rows[accepting]["median_accept_minutes"] == 6.0
    assert (rows[declining]["declined"], rows[declining]["acceptance_rate_percent"]) == (1, 0.0)
    assert rows[declining]["decline_reasons"] == [{"code": "no_vehicle", "label": "车辆不足", "count": 1}]
    assert (rows[FUNERAL_HOME]["manual_offers"], rows[FUNERAL_HOME]["automatic_offers"]) == (1, 0)
    assert rows[accepting]["share_of_automatic_percent"] == pytest.approx(66.7)
    assert sum(row["offers"] for row in rows.values()) == 4, "the offer of 40 days ago is outside the period"


@time_machine.travel(MONDAY_MORNING + timedelta(hours=1), tick=False)
def test_fairness_longer_period_includes_older_offers(client, seeded, week_of_offers):
    response = client.get("/api/v1/agencies/fairness?since=60d",
                          headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert sum(row["offers"] for row in response.get_json()["items"]) == 5


@pytest.mark.parametrize("since", ["0d", "30", "1y", "400d", ""])
def test_fairness_bad_period_rejected(client, seeded, since):
    response = client.get(f"/api/v1/agencies/fairness?since={since}",
                          headers={"Authorization": f"Bearer {seeded['operator']}"})

    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "since"


def test_fairness_needs_staff_token(client, seeded):
    response = client.get("/api/v1/agencies/fairness", headers={"Authorization": f"Bearer {seeded['shequyun']}"})

    assert response.status_code == 403


@time_machine.travel(MONDAY_MORNING + timedelta(hours=1), tick=False)
def test_fairness_cli_table(runtime, seeded, week_of_offers):
    result = CliRunner().invoke(main, ["agencies", "fairness", "--since", "7d"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "统计期：2026-12-01 至 2026-12-07（北京时间，共 7 天）"
    assert lines[1].split()[:3] == ["编号", "名称", "派单数"]
    accepting, declining = week_of_offers
    assert "6.0 分钟" in next(line for line in lines if accepting in line)
    assert "车辆不足：1" in next(line for line in lines if declining in line)


@time_machine.travel(MONDAY_MORNING + timedelta(hours=1), tick=False)
def test_fairness_cli_table_in_english(runtime, seeded, week_of_offers):
    result = CliRunner().invoke(main, ["agencies", "fairness", "--since", "7d"], env={"HOTLINE_CLI_LANGUAGE": "en"})

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Period: 2026-12-01 to 2026-12-07 (Beijing time, 7 days)"
    assert lines[1].split()[:4] == ["ID", "Agency", "name", "Offers"]
    accepting, declining = week_of_offers
    assert "6.0 min" in next(line for line in lines if accepting in line)
    assert "No vehicle free: 1" in next(line for line in lines if declining in line)


def test_fairness_cli_bad_period(runtime, seeded):
    result = CliRunner().invoke(main, ["agencies", "fairness", "--since", "month"])

    assert result.exit_code == 2
    assert "30d" in result.output


@pytest.mark.parametrize("text, days", [("30d", 30), (" 7d ", 7), ("366d", 366), ("1 d", 1)])
def test_since_parsed(text, days):
    assert parse_since(text) == days
