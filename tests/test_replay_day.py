"""A whole day of sample traffic through the app, with the clock pinned to each request's instant."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import time_machine
from conftest import SAMPLES
from sqlmodel import select

from hotline import replay
from hotline.clock import now
from hotline.models import Agency, Offer
from hotline.sla.sweep import sweep_breaches
from hotline.telephony.signatures import compute_signature
from workers import jobs

BASE_URL = "https://hotline.example.test"
DAY_FILE = SAMPLES / "day-2026-12-07.jsonl"


def _replay_day(runtime, transport, seeded, after_each=None):
    """Replay the day, running the scheduler's sweeps, and `after_each` if given, at every request's instant."""
    records = replay.read_lines(DAY_FILE.read_text(encoding="utf-8").splitlines())
    traveller = {"machine": None}

    def pin(instant: datetime) -> None:
        if traveller["machine"] is not None:
            traveller["machine"].stop()
        traveller["machine"] = time_machine.travel(instant, tick=False)
        traveller["machine"].start()
        # What the scheduler would have done by this instant.
        jobs.sweep_offers()
        sweep_breaches(runtime, now())
        if after_each is not None:
            after_each()

    try:
        counts = replay.send_all(records, transport, BASE_URL, runtime.settings.twilio_auth_token, seeded,
                                 before_each=pin)
        pin(datetime.fromisoformat("2026-12-07T23:59:00+08:00"))
    finally:
        traveller["machine"].stop()
    return records, counts, replay.collect_tickets(transport, seeded["operator"])


def test_replay_day_makes_one_ticket_each(runtime, transport, seeded):
    records, counts, tickets = _replay_day(runtime, transport, seeded)

    assert counts.errors == []
    assert all(status < 500 for status in counts.by_status)

    referral_keys = {(record["source"], record["json"]["external_id"]) for record in records
                     if record["kind"] == "referral"}
    stored_referrals = [(ticket["source"], ticket["external_id"]) for ticket in tickets if ticket["external_id"]]
    assert sorted(stored_referrals) == sorted(referral_keys)

    call_sids = {record["form"]["CallSid"] for record in records if record["kind"].startswith("twilio")}
    owners = defaultdict(list)
    for ticket in tickets:
        for call_sid in ticket["call_sids"]:
            owners[call_sid].append(ticket["number"])
    assert set(owners) == call_sids
    assert all(len(numbers) == 1 for numbers in owners.values())


def test_replay_within_seconds_accepts_every_referral(runtime, transport, seeded):
    records = replay.read_lines(DAY_FILE.read_text(encoding="utf-8").splitlines())
    referral_keys = {(record["source"], record["json"]["external_id"]) for record in records
                     if record["kind"] == "referral"}

    # As a user's replay runs: the whole day arrives at once, at the hour the recording starts.
    with time_machine.travel(datetime.fromisoformat(records[0]["at"]), tick=False):
        counts = replay.send_all(records, transport, BASE_URL, runtime.settings.twilio_auth_token, seeded)

    assert counts.errors == []
    assert counts.referrals_created == len(referral_keys)


def test_replay_day_queue_serves_referrals_first(runtime, transport, seeded):
    _, _, tickets = _replay_day(runtime, transport, seeded)

    positions = defaultdict(lambda: {"referral": [], "phone": []})
    for position, ticket in enumerate(tickets):
        kind = "phone" if ticket["channel"] == "phone" else "referral"
        positions[(ticket["category"], tuple(sorted(ticket["needs"])))][kind].append(position)

    compared = 0
    for group in positions.values():
        if group["referral"] and group["phone"]:
            compared += 1
            assert max(group["referral"]) < min(group["phone"])
    assert compared > 0


def test_replay_day_body_transport_offered(runtime, transport, seeded):
    _, _, tickets = _replay_day(runtime, transport, seeded)
    with runtime.transaction() as session:
        agencies = {agency.id: agency for agency in session.exec(select(Agency)).all()}

    body_transport = [ticket for ticket in tickets if "body_transport" in ticket["needs"]]
    assert body_transport
    for ticket in body_transport:
        assert ticket["priority"] == "P1", ticket["number"]
        assert ticket["offers"], ticket["number"]
        agency = agencies[ticket["offers"][0]["agency_id"]]
        assert "*" in agency.towns or ticket["town_code"] in agency.towns, ticket["number"]


def test_replay_day_flags_sla_breaches(runtime, transport, seeded):
    _, _, tickets = _replay_day(runtime, transport, seeded)

    breached = [clock for ticket in tickets for clock in ticket["sla"] if clock["breached_at"]]
    assert breached
    for clock in breached:
        assert clock["breached_at"] == clock["due_at"]
        assert clock["due_at"].endswith("+08:00")


def test_replay_summary_mentions_counts(runtime, transport, seeded):
    _, counts, tickets = _replay_day(runtime, transport, seeded)

    text = replay.summarise(counts, tickets)

    assert f"tickets: {len(tickets)}" in text
    assert "duplicates absorbed:" in text
    assert json.dumps(text)  # printable as one block


def test_replay_with_agencies_answering(runtime, transport, seeded):
    answered = []

    def answer_pending_offers():
        with runtime.transaction() as session:
            pending = session.exec(select(Offer, Agency).join(Agency, Agency.id == Offer.agency_id)
                                   .where(Offer.state == "pending")).all()
        for offer, agency in pending:
            form = {"From": agency.contact_phone, "To": "+862159200496", "Body": f"{offer.code} 接",
                    "MessageSid": f"SM{offer.code}"}
            signature = compute_signature(runtime.settings.twilio_auth_token, BASE_URL + "/twilio/sms", form)
            status, _ = transport.post("/twilio/sms", form=form, headers={"X-Twilio-Signature": signature})
            answered.append(status)

    _, _, tickets = _replay_day(runtime, transport, seeded, after_each=answer_pending_offers)

    accepted = [offer for ticket in tickets for offer in ticket["offers"] if offer["state"] == "accepted"]
    agency_tickets = [ticket for ticket in tickets if ticket["category"] == "agency_service"]
    assert answered and set(answered) == {200}
    assert len(accepted) == len(answered)
    unplaced = [ticket["number"] for ticket in agency_tickets
                if ticket["status"] != "dispatched" and "dispatch_escalated" not in ticket["tags"]]
    assert unplaced == []
    with runtime.transaction() as session:
        capacity = {agency.id: agency.capacity for agency in session.exec(select(Agency)).all()}
    jobs_per_agency = Counter(offer["agency_id"] for offer in accepted)
    assert all(count <= capacity[agency_id] for agency_id, count in jobs_per_agency.items())


def test_accept_pending_offers_by_sms(runtime, transport, seeded):
    body = {"external_id": "A-1", "category": "agency_service", "needs": ["body_transport"],
            "resident": {"phone": "13812345678", "town": "白鹤镇"}}
    transport.post("/api/v1/referrals", json_body=body, headers={"Authorization": f"Bearer {seeded['shequyun']}"})
    tickets = replay.collect_tickets(transport, seeded["operator"])

    accepted = replay.accept_pending_offers(transport, BASE_URL, runtime.settings.twilio_auth_token,
                                            seeded["operator"], tickets)

    [ticket] = replay.collect_tickets(transport, seeded["operator"])
    assert accepted == 1
    assert ticket["status"] == "dispatched"
    assert ticket["offers"][0]["state"] == "accepted"


def test_replay_moves_time_of_death_with_intake():
    record = {"at": "2026-12-07T08:00:00+08:00", "kind": "referral", "source": "shequyun",
              "json": {"external_id": "D-1", "deceased": {"died_at": "2026-12-07T06:10:00+08:00", "place": "home"}}}

    moved = replay._shifted(record, timedelta(days=-2, hours=1))

    assert moved["json"]["deceased"]["died_at"] == "2026-12-05T07:10:00+08:00"
    assert record["json"]["deceased"]["died_at"] == "2026-12-07T06:10:00+08:00", "the sample is left as it was"
    assert replay._shifted(record, timedelta(days=-2, hours=1)) == moved, "a resend moves the same way"
    assert replay._shifted(record, timedelta(0)) is record


def test_death_time_shift_lands_on_day_before():
    last_at = datetime.fromisoformat("2026-12-07T23:40:00+08:00")

    assert replay.death_time_shift(last_at, last_at) == timedelta(days=-1)
    assert replay.death_time_shift(last_at, datetime.fromisoformat("2026-12-06T02:30:00Z")) == timedelta(days=-2)
    assert replay.death_time_shift(last_at, datetime.fromisoformat("2026-12-08T23:59:00+08:00")) == timedelta(0)


def test_recording_past_midnight_replays_in_past():
    records = [{"at": "2026-12-07T22:00:00+08:00", "kind": "referral", "json": {}},
               {"at": "2026-12-08T06:40:00+08:00", "kind": "referral",
                "json": {"external_id": "N-1", "deceased": {"died_at": "2026-12-08T06:30:00+08:00"}}}]
    now = datetime.fromisoformat("2026-12-20T01:00:00+08:00")

    shift = replay.death_time_shift(max(datetime.fromisoformat(record["at"]) for record in records), now)
    moved = replay._shifted(records[1], shift)["json"]["deceased"]["died_at"]

    assert datetime.fromisoformat(moved) < now


def test_replayed_deaths_before_send_day():
    records = replay.read_lines(DAY_FILE.read_text(encoding="utf-8").splitlines())
    first_at = datetime.fromisoformat(records[0]["at"])
    last_at = max(datetime.fromisoformat(record["at"]) for record in records)
    shift = replay.death_time_shift(last_at, first_at)

    moved = [replay._shifted(record, shift)["json"]["deceased"]["died_at"] for record in records
             if record["kind"] == "referral" and (record["json"].get("deceased") or {}).get("died_at")]

    assert moved
    assert all(datetime.fromisoformat(died_at) < first_at.replace(hour=0, minute=0) for died_at in moved)
