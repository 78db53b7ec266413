"""The voice menu and SMS replies, checked by parsing the TwiML they produce."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hotline import vocabulary
from hotline.telephony import twiml

ACTION_URL = "https://hotline.example.test/twilio/voice/menu?attempt=1&lang=zh"


def parse(document: str) -> ET.Element:
    root = ET.fromstring(document)
    assert root.tag == "Response"
    return root


def assert_mandarin(say: ET.Element) -> None:
    assert say.tag == "Say"
    assert say.get("language") == "cmn-CN"
    assert say.get("voice") == "Polly.Zhiyu-Neural"
    assert say.text


def assert_menu_gather(gather: ET.Element) -> None:
    assert gather.tag == "Gather"
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == ACTION_URL
    assert gather.get("method") == "POST"
    assert gather.get("timeout") == "6"
    prompts = list(gather)
    assert len(prompts) == 1
    assert_mandarin(prompts[0])
    for label in ("治丧咨询，请按1", "遗体接运或代理服务，请按2", "身故一件事帮办，请按3", "人工服务，请按0"):
        assert label in prompts[0].text


def assert_no_input_ending(say: ET.Element, hangup: ET.Element) -> None:
    assert_mandarin(say)
    assert "工作人员给您回电" in say.text
    assert hangup.tag == "Hangup"


def test_menu_greets_in_mandarin():
    verbs = list(parse(twiml.menu(ACTION_URL)))

    greeting = verbs[0]
    assert_mandarin(greeting)
    assert "青浦区殡仪馆白事服务专线" in greeting.text
    assert "深表哀悼" in greeting.text


def test_menu_repeats_once_then_hangs_up():
    verbs = list(parse(twiml.menu(ACTION_URL)))

    assert [verb.tag for verb in verbs] == ["Say", "Gather", "Gather", "Say", "Hangup"]
    assert_menu_gather(verbs[1])
    assert_menu_gather(verbs[2])
    assert "再听一遍" in verbs[2][0].text
    assert_no_input_ending(verbs[3], verbs[4])


def test_menu_escapes_action_url():
    document = twiml.menu(ACTION_URL)

    assert "attempt=1&amp;lang=zh" in document
    assert parse(document).find("Gather").get("action") == ACTION_URL


@pytest.mark.parametrize(
    ("digit", "expected_phrase"),
    [("1", "治丧咨询"), ("2", "立即为您安排遗体接运"), ("3", "身故一件事帮办"), ("0", "人工服务")],
)
def test_menu_choice_confirms_and_enqueues(digit, expected_phrase):
    verbs = list(parse(twiml.menu_choice(digit, ACTION_URL)))

    assert [verb.tag for verb in verbs] == ["Say", "Say", "Enqueue"]
    assert_mandarin(verbs[0])
    assert expected_phrase in verbs[0].text
    assert_mandarin(verbs[1])
    assert "转接" in verbs[1].text
    assert verbs[2].text == "operators"


def test_menu_choice_tolerates_whitespace():
    verbs = list(parse(twiml.menu_choice(" 2 ", ACTION_URL)))

    assert verbs[-1].tag == "Enqueue"


@pytest.mark.parametrize("digit", ["9", "*", "#", "", "12"])
def test_menu_choice_unknown_digit_repeats_menu(digit):
    verbs = list(parse(twiml.menu_choice(digit, ACTION_URL)))

    assert [verb.tag for verb in verbs] == ["Say", "Gather", "Gather", "Say", "Hangup"]
    assert_mandarin(verbs[0])
    assert "按键无效" in verbs[0].text
    assert_menu_gather(verbs[1])
    assert_menu_gather(verbs[2])
    assert_no_input_ending(verbs[3], verbs[4])
    assert parse(twiml.menu_choice(digit, ACTION_URL)).find("Enqueue") is None


def test_menu_categories_use_vocabulary_codes():
    assert set(twiml.MENU_CATEGORIES) == set(twiml.CHOICE_CONFIRMATIONS)
    for category, needs in twiml.MENU_CATEGORIES.values():
        assert category in vocabulary.CATEGORIES
        for need in needs:
            assert need in vocabulary.NEEDS
    assert twiml.MENU_CATEGORIES["2"] == ("agency_service", ["body_transport"])


def test_hangup_is_empty_response():
    root = parse(twiml.hangup())

    assert list(root) == []
    assert not (root.text or "").strip()


def test_sms_reply_has_one_message():
    root = parse(twiml.sms_reply("您的工单 QP-20261207-0001 已受理。"))

    messages = list(root)
    assert [message.tag for message in messages] == ["Message"]
    assert messages[0].text == "您的工单 QP-20261207-0001 已受理。"


@pytest.mark.parametrize("text", [None, ""])
def test_sms_reply_empty_without_text(text):
    root = parse(twiml.sms_reply(text))

    assert list(root) == []
