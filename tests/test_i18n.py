"""Language selection: ?lang=, then the lang cookie, then Accept-Language, else Simplified Chinese."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify
from flask_babel import gettext

from hotline.i18n import TRANSLATIONS_DIR, current_language, init_babel, locale_for_tag

NOT_FOUND_ZH = "未找到。"
NOT_FOUND_EN = "Not found."


@pytest.fixture
def client():
    app = Flask(__name__)
    init_babel(app)

    @app.get("/message")
    def message():
        return jsonify({"message": gettext("Not found."), "language": current_language()})

    @app.get("/field")
    def field():
        return jsonify({"message": gettext("Field %(field)s is required.", field="category")})

    return app.test_client()


def test_catalogue_compiled():
    compiled = TRANSLATIONS_DIR / "zh_Hans_CN" / "LC_MESSAGES" / "messages.mo"

    assert compiled.is_file(), f"{compiled} is missing: run `make venv` to compile the catalogue"


def test_no_header_gives_chinese(client):
    body = client.get("/message").get_json()

    assert body["message"] == NOT_FOUND_ZH
    assert body["language"] == "zh"


@pytest.mark.parametrize(
    "header",
    ["zh-CN", "zh-CN,en;q=0.5", "zh-CN,zh;q=0.9,en;q=0.8", "zh", "zh-TW", "fr-FR,zh-CN;q=0.5",
     "zh-Hans,en;q=0.9", "zh-Hans-CN,en;q=0.5", "zh-TW,en;q=0.8", "zh-HK,en-US;q=0.9,en;q=0.8", "en;q=0,zh-SG"],
)
def test_chinese_accept_language(client, header):
    body = client.get("/message", headers={"Accept-Language": header}).get_json()

    assert body["message"] == NOT_FOUND_ZH
    assert body["language"] == "zh"


@pytest.mark.parametrize("header", ["en-US", "en-US,en;q=0.9,zh-CN;q=0.8", "en-GB", "fr,en;q=0.5,zh;q=0.4"])
def test_english_accept_language(client, header):
    body = client.get("/message", headers={"Accept-Language": header}).get_json()

    assert body["message"] == NOT_FOUND_EN
    assert body["language"] == "en"


def test_vary_names_language_headers(client):
    response = client.get("/message")

    assert "Accept-Language" in response.vary
    assert "Cookie" in response.vary


def test_unsupported_language_gives_chinese(client):
    body = client.get("/message", headers={"Accept-Language": "fr-FR,de;q=0.8"}).get_json()

    assert body["message"] == NOT_FOUND_ZH


def test_lang_parameter_overrides_header(client):
    english = client.get("/message?lang=en", headers={"Accept-Language": "zh-CN"}).get_json()
    chinese = client.get("/message?lang=zh", headers={"Accept-Language": "en-US"}).get_json()

    assert english["message"] == NOT_FOUND_EN
    assert chinese["message"] == NOT_FOUND_ZH


def test_unknown_lang_parameter_ignored(client):
    body = client.get("/message?lang=xx", headers={"Accept-Language": "en-US"}).get_json()

    assert body["message"] == NOT_FOUND_EN


def test_lang_parameter_sets_cookie(client):
    response = client.get("/message?lang=en")

    cookie = client.get_cookie("lang")
    assert cookie is not None, response.headers
    assert cookie.value == "en"
    assert client.get("/message", headers={"Accept-Language": "zh-CN"}).get_json()["message"] == NOT_FOUND_EN


def test_cookie_overrides_header(client):
    client.set_cookie("lang", "zh_Hans_CN")

    body = client.get("/message", headers={"Accept-Language": "en-US"}).get_json()

    assert body["message"] == NOT_FOUND_ZH


def test_request_without_lang_sets_no_cookie(client):
    response = client.get("/message", headers={"Accept-Language": "en-US"})

    assert "Set-Cookie" not in response.headers


def test_message_with_field(client):
    chinese = client.get("/field").get_json()["message"]
    english = client.get("/field?lang=en").get_json()["message"]

    assert chinese == "缺少必填字段 category。"
    assert english == "Field category is required."


@pytest.mark.parametrize(
    ("tag", "locale"),
    [
        ("zh", "zh_Hans_CN"),
        ("zh-CN", "zh_Hans_CN"),
        ("zh_Hans_CN", "zh_Hans_CN"),
        ("ZH-cn", "zh_Hans_CN"),
        ("en", "en"),
        ("en-US", "en"),
        ("en_GB", "en"),
        ("", None),
        ("fr", None),
        ("english", None),
    ],
)
def test_locale_for_tag(tag, locale):
    assert locale_for_tag(tag) == locale


def test_current_language_outside_request():
    assert current_language() == "zh"
