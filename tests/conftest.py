"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL and Redis are real servers (HOTLINE_TEST_POSTGRES_URL, HOTLINE_TEST_REDIS_URL). Outside CI a
missing server skips the tests that need it; with CI=true it fails them, so a green CI run always
means both databases were exercised.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from dispatch_helpers import DIANSHANHU, MONDAY_MORNING
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel, select

import hotline.models  # noqa: F401  (registers the tables)
from hotline import runtime as runtime_module
from hotline.config import load_settings
from hotline.models import Agency
from hotline.queueing import InProcessQueue
from hotline.runtime import build_runtime

pytest_plugins = ["twilio_mock", "webhook_receiver"]

POSTGRES_ADMIN_URL = os.environ.get("HOTLINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HOTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _service_missing(message: str):
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires every service)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_database_url():
    """Create a throwaway database for this test run and drop it afterwards."""
    name = f"hotline_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means the server is missing
        admin.dispose()
        _service_missing(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}")
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    schema_engine = create_engine(url)
    SQLModel.metadata.create_all(schema_engine)
    schema_engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(autouse=True)
def default_cli_language(monkeypatch):
    """Clear the variables that choose the `hotline` command's language, so it prints Simplified Chinese.

    A test of the English output sets HOTLINE_CLI_LANGUAGE or LANG through CliRunner's `env`.
    """
    for name in ("HOTLINE_CLI_LANGUAGE", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A database with the schema and no rows, on each backend in turn."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hotline.sqlite3'}"
        engine = create_engine(url)
        SQLModel.metadata.create_all(engine)
        engine.dispose()
        return url

    url = request.getfixturevalue("postgres_database_url")
    engine = create_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def settings(database_url, tmp_path, request):
    """Settings on the test database; a test marked `webhook_loopback` may send webhooks to 127.0.0.1."""
    base = load_settings({"HOTLINE_INSTANCE_DIR": str(tmp_path), "HOTLINE_TWILIO_AUTH_TOKEN": "test-auth-token",
                          "HOTLINE_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
                          "HOTLINE_PUBLIC_BASE_URL": "https://hotline.example.test",
                          "HOTLINE_SECRET_KEY": "test-secret-key-0123456789"})
    allow_loopback = request.node.get_closest_marker("webhook_loopback") is not None
    return replace(base, database_url=database_url, webhook_allow_loopback=allow_loopback)


@pytest.fixture
def runtime(settings):
    """A runtime on the test database with jobs run in-process, installed as `current()`."""
    built = build_runtime(settings, queue=InProcessQueue())
    previous = runtime_module._current
    runtime_module.install(built)
    yield built
    runtime_module._current = previous
    built.dispose()


@pytest.fixture
def redis_url():
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    connection = Redis.from_url(REDIS_URL)
    try:
        connection.flushdb()
    except RedisConnectionError as error:
        _service_missing(f"Redis is not reachable at {REDIS_URL}: {error}")
    yield REDIS_URL
    connection.flushdb()
    connection.close()





@pytest.fixture
def app(runtime):
    from hotline import create_app

    application = create_app(runtime)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def seeded(runtime):
    """Towns, the demo agencies (licences valid to 2030), staff and one token per source and role."""
    from datetime import date

    from sqlmodel import select

    from hotline import seed
    from hotline.models import User
    from hotline.tokens import create_token
    from hotline.vocabulary import REFERRAL_SOURCES

    tokens = {}
    with runtime.transaction() as session:
        seed.seed_towns(session)
        seed.seed_agencies(session, licence_expires_on=date(2030, 12, 31))
        seed.seed_users(session, "test-password")
        session.flush()
        for source in REFERRAL_SOURCES:
            tokens[source] = create_token(session, source, source=source)
        for role in ("operator", "supervisor"):
            user = session.exec(select(User).where(User.username == role)).one()
            tokens[role] = create_token(session, role, role=role, user_id=user.id)
    return tokens


class ClientTransport:
    """The replay transport over Flask's test client, so a replay runs without a server."""

    def __init__(self, client):
        self.client = client

    def post(self, path, *, form=None, json_body=None, headers):
        response = self.client.post(path, data=form, json=json_body, headers=headers)
        return response.status_code, response.get_json(silent=True) or response.get_data(as_text=True)

    def get(self, path, *, headers):
        response = self.client.get(path, headers=headers)
        return response.status_code, response.get_json(silent=True) or response.get_data(as_text=True)


@pytest.fixture
def transport(client):
    return ClientTransport(client)


@pytest.fixture
def rotation(runtime, seeded):
    """Put 淀山湖 behind 练塘福顺 in the rotation, so tickets in 练塘 go to 练塘福顺 first and to 淀山湖 next."""
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == DIANSHANHU)).one()
        agency.last_offered_at = MONDAY_MORNING + timedelta(hours=1)
        session.add(agency)
    return seeded
