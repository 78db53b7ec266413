"""Settings: defaults, and a clear start-up error naming each malformed variable."""

from __future__ import annotations

import pytest

from hotline.config import ConfigError, load_settings


def test_defaults_embedded(tmp_path):
    settings = load_settings({"HOTLINE_INSTANCE_DIR": str(tmp_path)})

    assert settings.database_url == f"sqlite:///{tmp_path / 'hotline.sqlite3'}"
    assert settings.redis_url is None
    assert settings.in_process_jobs
    assert str(settings.timezone) == "Asia/Shanghai"
    assert settings.sms_backend == "console"
    assert settings.trusted_proxy_hops == 0
    assert settings.webhook_allow_loopback is False


def test_postgres_url_uses_psycopg3():
    settings = load_settings({"HOTLINE_DATABASE_URL": "postgresql://postgres@127.0.0.1/test"})

    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1/test"


@pytest.mark.parametrize("name, value, expected", [
    ("HOTLINE_DATABASE_URL", "mysql://x/y", "sqlite:///PATH or postgresql://"),
    ("HOTLINE_REDIS_URL", "localhost:6379", "redis://"),
    ("HOTLINE_TIMEZONE", "Mars/Olympus", "IANA time zone"),
    ("HOTLINE_PUBLIC_BASE_URL", "hotline.example", "http://"),
    ("HOTLINE_TRUSTED_PROXY_HOPS", "two", "integer from 0 to 10"),
    ("HOTLINE_TRUSTED_PROXY_HOPS", "11", "integer from 0 to 10"),
    ("HOTLINE_SMS_BACKEND", "pigeon", "console, twilio"),
    ("HOTLINE_SECRET_KEY", "short", "at least 16 characters"),
    ("HOTLINE_WEBHOOK_ALLOW_LOOPBACK", "sometimes", "expected true or false"),
])
def test_malformed_value_names_variable(name, value, expected):
    with pytest.raises(ConfigError) as raised:
        load_settings({name: value})

    assert name in str(raised.value)
    assert expected in str(raised.value)


@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("1", True), ("on", True),
                                             ("yes", True), ("false", False), ("0", False), ("off", False),
                                             ("no", False), ("", False)])
def test_webhook_loopback_switch_read(value, expected):
    settings = load_settings({"HOTLINE_WEBHOOK_ALLOW_LOOPBACK": value})

    assert settings.webhook_allow_loopback is expected


def test_twilio_backend_needs_credentials():
    with pytest.raises(ConfigError) as raised:
        load_settings({"HOTLINE_SMS_BACKEND": "twilio"})

    assert "HOTLINE_TWILIO_AUTH_TOKEN" in str(raised.value)


def test_cli_reports_bad_setting(monkeypatch):
    from click.testing import CliRunner

    from hotline.cli import main

    monkeypatch.setenv("HOTLINE_TIMEZONE", "Nowhere/Else")
    result = CliRunner().invoke(main, ["tokens", "create", "--source", "shequyun"])

    assert result.exit_code != 0
    assert "HOTLINE_TIMEZONE" in result.output


@pytest.mark.parametrize("environ", [
    {"HOTLINE_PUBLIC_BASE_URL": "https://hotline.example"},
    {"HOTLINE_SMS_BACKEND": "twilio", "HOTLINE_TWILIO_ACCOUNT_SID": "AC1", "HOTLINE_TWILIO_AUTH_TOKEN": "x"},
])
def test_public_service_needs_secret_key(environ):
    with pytest.raises(ConfigError) as raised:
        load_settings(environ)

    assert "HOTLINE_SECRET_KEY" in str(raised.value)
