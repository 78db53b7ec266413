"""Rate limits on the public endpoints: per token and per address, 429 JSON with Retry-After, Redis storage."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from hotline import create_app
from hotline.config import ConfigError, load_settings
from hotline.ratelimit import storage_uri

START = datetime(2026, 12, 7, 2, 0, 30, tzinfo=UTC)


def _app(runtime, per_token: str, per_ip: str, redis_url: str | None = None):
    runtime.settings = replace(runtime.settings, rate_limit_per_token=per_token, rate_limit_per_ip=per_ip,
                               redis_url=redis_url)
    application = create_app(runtime)
    application.config["TESTING"] = True
    return application.test_client()


def _get_referral(client, token: str, address: str = "127.0.0.1"):
    return client.get("/api/v1/referrals/SQY-404", headers={"Authorization": f"Bearer {token}",
                                                            "Accept-Language": "en"},
                      environ_base={"REMOTE_ADDR": address})


def test_token_limit_answers_429(runtime, seeded):
    client = _app(runtime, "3/minute", "100/minute")

    with time_machine.travel(START, tick=False):
        statuses = [_get_referral(client, seeded["shequyun"]).status_code for _ in range(3)]
        limited = _get_referral(client, seeded["shequyun"])
        other_token = _get_referral(client, seeded["community_worker"])

    assert statuses == [404, 404, 404]
    assert limited.status_code == 429
    assert "Retry-After" not in other_token.headers, "only a 429 asks the client to wait"
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert limited.get_json()["error"]["message"].startswith("Too many requests")
    assert 59 <= int(limited.headers["Retry-After"]) <= 61, "the window opened by the first request lasts a minute"
    assert other_token.status_code == 404, "each token has its own counter"


def test_limit_resets_after_window(runtime, seeded):
    client = _app(runtime, "2/minute", "100/minute")

    with time_machine.travel(START, tick=False) as traveller:
        for _ in range(2):
            _get_referral(client, seeded["shequyun"])
        limited = _get_referral(client, seeded["shequyun"])
        traveller.shift(timedelta(seconds=62))
        again = _get_referral(client, seeded["shequyun"])

    assert limited.status_code == 429
    assert again.status_code == 404


def test_address_limit_counts_every_token(runtime, seeded):
    client = _app(runtime, "100/minute", "2/minute")

    with time_machine.travel(START, tick=False):
        first = _get_referral(client, seeded["shequyun"])
        second = _get_referral(client, seeded["community_worker"])
        third = _get_referral(client, seeded["elderly_advisor"])
        elsewhere = _get_referral(client, seeded["elderly_advisor"], address="127.0.0.2")

    assert (first.status_code, second.status_code) == (404, 404)
    assert third.status_code == 429
    assert elsewhere.status_code == 404


def test_staff_endpoints_not_limited(runtime, seeded):
    client = _app(runtime, "1/minute", "1/minute")
    headers = {"Authorization": f"Bearer {seeded['operator']}"}

    with time_machine.travel(START, tick=False):
        statuses = [client.get("/api/v1/tickets", headers=headers).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]


def test_open311_limit_in_georeport_format(runtime, seeded):
    client = _app(runtime, "1/minute", "100/minute")
    url = f"/open311/v2/requests.json?api_key={seeded['shequyun']}"

    with time_machine.travel(START, tick=False):
        client.get(url)
        limited = client.get(url, headers={"Accept-Language": "zh-CN"})

    assert limited.status_code == 429
    [error] = limited.get_json()
    assert error["code"] == 429
    assert "请求过于频繁" in error["description"]
    assert "Retry-After" in limited.headers


def test_several_limits_in_one_setting(runtime, seeded):
    client = _app(runtime, "10/second;3/minute", "100/minute")

    with time_machine.travel(START, tick=False):
        statuses = [_get_referral(client, seeded["shequyun"]).status_code for _ in range(3)]
        limited = _get_referral(client, seeded["shequyun"])

    assert statuses == [404, 404, 404]
    assert limited.status_code == 429
    assert 59 <= int(limited.headers["Retry-After"]) <= 61, "Retry-After comes from the minute limit"


def test_api_key_and_bearer_share_counter(runtime, seeded):
    client = _app(runtime, "2/minute", "100/minute")
    token = seeded["shequyun"]

    with time_machine.travel(START, tick=False):
        as_api_key = client.get(f"/open311/v2/requests.json?api_key={token}")
        as_bearer = _get_referral(client, token)
        limited = _get_referral(client, token)

    assert as_api_key.status_code == 200
    assert as_bearer.status_code == 404
    assert limited.status_code == 429, "the api_key parameter and the Bearer header share one counter"


def test_unlimited_paths_not_counted(runtime, seeded):
    client = _app(runtime, "1/minute", "1/minute")
    token = seeded["shequyun"]

    with time_machine.travel(START, tick=False):
        health = [client.get("/healthz").status_code for _ in range(3)]
        no_route = [client.get(f"/open311/v2/no-such-page?api_key={token}").status_code for _ in range(3)]
        wrong_method = [client.delete(f"/open311/v2/requests.json?api_key={token}").status_code for _ in range(3)]
        first = _get_referral(client, token)
        second = _get_referral(client, token)

    assert health == [200, 200, 200]
    assert no_route == [404, 404, 404], "a path that matches no route is not counted"
    assert wrong_method == [405, 405, 405], "a method that the route does not allow is not counted"
    assert first.status_code == 404, "the public endpoint still has its whole limit"
    assert second.status_code == 429


def test_memory_counters_start_no_thread(runtime, seeded, monkeypatch):
    client = _app(runtime, "1000/minute", "1000/minute")
    started = []
    start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread.name) or start(thread))

    for _ in range(20):
        _get_referral(client, seeded["shequyun"])

    assert started == []


def test_unreachable_redis_lets_requests_through(runtime, seeded, caplog):
    # Port 1 on the loopback address refuses the connection at once.
    client = _app(runtime, "1/minute", "1/minute", redis_url="redis://127.0.0.1:1/0")

    with caplog.at_level(logging.ERROR, logger="hotline.ratelimit"):
        statuses = [_get_referral(client, seeded["shequyun"]).status_code for _ in range(3)]

    assert statuses == [404, 404, 404]
    [record] = caplog.records
    assert "counter storage failed" in record.getMessage()
    assert "127.0.0.1:1" in record.getMessage()


@pytest.mark.redis
def test_redis_counters_shared_between_apps(runtime, seeded, redis_url):
    first_app = _app(runtime, "2/minute", "100/minute", redis_url=redis_url)
    second_app = _app(runtime, "2/minute", "100/minute", redis_url=redis_url)

    with time_machine.travel(START, tick=False):
        _get_referral(first_app, seeded["shequyun"])
        _get_referral(second_app, seeded["shequyun"])
        limited = _get_referral(first_app, seeded["shequyun"])

    assert limited.status_code == 429, "two web processes share one counter in Redis"


@pytest.mark.redis
def test_redis_keys_contain_no_token(runtime, seeded, redis_url):
    from redis import Redis

    client = _app(runtime, "10/minute", "10/minute", redis_url=redis_url)
    token = seeded["shequyun"]
    _get_referral(client, token)

    connection = Redis.from_url(redis_url)
    keys = sorted(key.decode() for key in connection.keys("*LIMITER/hotline-ratelimit/*"))
    connection.close()

    assert len(keys) == 2
    assert keys[0].endswith("LIMITER/hotline-ratelimit/ip:127.0.0.1/public-ip/10/1/minute")
    assert "LIMITER/hotline-ratelimit/token:" in keys[1]
    assert keys[1].endswith("/public-token/10/1/minute")
    assert token not in keys[1], "the counter key holds a digest of the token, not the token"


def test_storage_uri_for_unix_socket():
    assert storage_uri(None) == "memory://"
    assert storage_uri("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert storage_uri("unix:///run/redis.sock") == "redis+unix:///run/redis.sock"


@pytest.mark.parametrize("value", ["lots", "0/minute", "120/fortnight"])
def test_bad_limit_setting_rejected(value):
    with pytest.raises(ConfigError, match="HOTLINE_RATE_LIMIT_PER_TOKEN"):
        load_settings({"HOTLINE_RATE_LIMIT_PER_TOKEN": value})


def test_limit_settings_read():
    settings = load_settings({"HOTLINE_RATE_LIMIT_PER_TOKEN": "10/second;1000/hour",
                              "HOTLINE_RATE_LIMIT_PER_IP": "50 per minute"})

    assert settings.rate_limit_per_token == "10/second;1000/hour"
    assert settings.rate_limit_per_ip == "50 per minute"
