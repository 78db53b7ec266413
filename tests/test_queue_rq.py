"""The production job path: the web process commits, enqueues to real Redis, and real `rq worker --burst`
processes run dispatch and delivery against the same database."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry
from sqlalchemy import update
from sqlmodel import select

from hotline import create_app
from hotline import runtime as runtime_module
from hotline.clock import now
from hotline.models import Offer, OutboxMessage, Ticket
from hotline.queueing import RedisQueue
from hotline.runtime import build_runtime
from workers import jobs

RQ = str(Path(sys.executable).with_name("rq"))
BODY_TRANSPORT = {
    "external_id": "YL-1",
    "resident": {"name": "孙超", "phone": "13812345678", "town": "练塘镇"},
    "category": "agency_service",
    "needs": ["body_transport"],
    "flags": [],
}


@pytest.fixture
def redis_runtime(settings, redis_url, seeded):
    """A runtime whose jobs go to RQ on the test Redis, installed as `current()`."""
    built = build_runtime(replace(settings, redis_url=redis_url))
    assert isinstance(built.queue, RedisQueue)
    previous = runtime_module._current
    runtime_module.install(built)
    yield built
    runtime_module._current = previous
    built.engine.dispose()


def _worker_env(runtime, extra=None):
    settings = runtime.settings
    env = dict(os.environ)
    env.update({
        "HOTLINE_DATABASE_URL": settings.database_url,
        "HOTLINE_REDIS_URL": settings.redis_url,
        "HOTLINE_INSTANCE_DIR": str(settings.instance_dir),
        "HOTLINE_PUBLIC_BASE_URL": settings.public_base_url or "",
        "HOTLINE_TWILIO_AUTH_TOKEN": settings.twilio_auth_token or "",
        "HOTLINE_TWILIO_ACCOUNT_SID": settings.twilio_account_sid or "",
        "HOTLINE_SECRET_KEY": settings.secret_key,
    })
    env.update(extra or {})
    return env


def _start_workers(runtime, count=1, extra_env=None):
    command = [RQ, "worker", "--burst", "--url", runtime.settings.redis_url, "dispatch", "notify"]
    return [subprocess.Popen(command, env=_worker_env(runtime, extra_env), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT) for _ in range(count)]


def _wait(processes):
    for process in processes:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output.decode()


def _refer(runtime, seeded):
    client = create_app(runtime).test_client()
    response = client.post("/api/v1/referrals", json=BODY_TRANSPORT,
                           headers={"Authorization": f"Bearer {seeded['elderly_advisor']}"})
    assert response.status_code == 201
    return response.get_json()["number"]


def _state(runtime, number):
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).one()
        offers = session.exec(select(Offer).where(Offer.ticket_id == ticket.id)).all()
        messages = session.exec(select(OutboxMessage).where(OutboxMessage.ticket_id == ticket.id)).all()
        return ticket, offers, messages


@pytest.mark.redis
def test_web_commits_then_worker_dispatches(redis_runtime, seeded):
    number = _refer(redis_runtime, seeded)

    _, offers_before, _ = _state(redis_runtime, number)
    assert offers_before == []
    _wait(_start_workers(redis_runtime))

    ticket, offers, messages = _state(redis_runtime, number)
    assert ticket.status == "dispatching"
    assert len(offers) == 1
    assert [message.status for message in messages] == ["sent"]


@pytest.mark.redis
def test_dispatch_job_twice_two_workers_one_offer(redis_runtime, seeded):
    number = _refer(redis_runtime, seeded)
    ticket, _, _ = _state(redis_runtime, number)
    for _ in range(3):
        redis_runtime.queue.enqueue("dispatch_ticket", ticket.id)

    _wait(_start_workers(redis_runtime, count=2))

    _, offers, messages = _state(redis_runtime, number)
    assert len(offers) == 1
    assert len([message for message in messages if message.channel == "sms"]) == 1
    assert all(message.status == "sent" for message in messages)
    connection = Redis.from_url(redis_runtime.settings.redis_url)
    assert FailedJobRegistry(queue=Queue("dispatch", connection=connection)).count == 0


@pytest.mark.redis
def test_sms_failure_retried_once_sent(redis_runtime, seeded, twilio_mock):
    twilio_mock.respond(503)
    env = {"HOTLINE_SMS_BACKEND": "twilio", "HOTLINE_TWILIO_API_BASE_URL": twilio_mock.base_url,
           "HOTLINE_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000"}
    number = _refer(redis_runtime, seeded)
    _wait(_start_workers(redis_runtime, extra_env=env))

    _, _, [message] = _state(redis_runtime, number)
    assert message.status == "pending"
    assert message.attempts == 1
    assert message.last_error

    with redis_runtime.transaction() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.id == message.id)
                        .values(next_attempt_at=now() - timedelta(seconds=1)))
    assert jobs.sweep_outbox() == 1
    _wait(_start_workers(redis_runtime, extra_env=env))

    _, _, [message] = _state(redis_runtime, number)
    assert message.status == "sent"
    assert message.attempts == 2
    assert len(twilio_mock.requests) == 2
    connection = Redis.from_url(redis_runtime.settings.redis_url)
    assert FailedJobRegistry(queue=Queue("notify", connection=connection)).count == 0
