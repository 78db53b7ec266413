"""TwiML documents for the voice menu and SMS replies, built as pure functions of their inputs.

Every prompt is Mandarin, spoken by a Mandarin Polly voice. The twilio library accepts any language
string without checking it, so a typo here would only show up on a live call. The tests parse the XML
and pin both attributes.
"""

from __future__ import annotations

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather, VoiceResponse

SAY_LANGUAGE = "cmn-CN"
SAY_VOICE = "Polly.Zhiyu-Neural"
GATHER_TIMEOUT_SECONDS = 6
OPERATORS_QUEUE = "operators"

# Menu digit -> (ticket category, ticket needs), as codes of hotline.vocabulary.
MENU_CATEGORIES = {
    "1": ("consultation", []),
    "2": ("agency_service", ["body_transport"]),
    "3": ("assisted_application", []),
    "0": ("consultation", []),
}

GREETING = "您好，这里是青浦区殡仪馆白事服务专线。对您家人的离世，我们深表哀悼，请您节哀。"
MENU_PROMPT = "治丧咨询，请按1。遗体接运或代理服务，请按2。身故一件事帮办，请按3。人工服务，请按0。"
REPEAT_PROMPT = "我们没有收到您的按键，请再听一遍。"
NO_INPUT_GOODBYE = "没有收到您的选择。稍后将有工作人员给您回电，请保持电话畅通。感谢您的来电，再见。"
INVALID_DIGIT = "抱歉，您的按键无效。"
TRANSFER_PROMPT = "正在为您转接工作人员，请稍候。"
CHOICE_CONFIRMATIONS = {
    "1": "您选择了治丧咨询。",
    "2": "您选择了遗体接运和代理服务。我们将立即为您安排遗体接运。",
    "3": "您选择了身故一件事帮办。",
    "0": "您选择了人工服务。",
}


def menu(action_url: str) -> str:
    """Greet the caller and offer the menu, whose pressed digit Twilio posts to `action_url`.

    With no key pressed the menu is offered a second time, then the caller hears that an operator
    will call back and the call ends.
    """
    response = VoiceResponse()
    _say(response, GREETING)
    _add_menu(response, action_url)
    return str(response)


def menu_choice(digit: str, action_url: str) -> str:
    """Confirm a menu choice and put the caller in the operators' queue.

    A digit outside MENU_CATEGORIES is announced as invalid and the menu is offered again, posting
    to `action_url` like the first one.
    """
    response = VoiceResponse()
    choice = (digit or "").strip()
    confirmation = CHOICE_CONFIRMATIONS.get(choice)

    if confirmation is None:
        _say(response, INVALID_DIGIT)
        _add_menu(response, action_url)
        return str(response)

    _say(response, confirmation)
    _say(response, TRANSFER_PROMPT)
    response.enqueue(OPERATORS_QUEUE)
    return str(response)


def hangup() -> str:
    """Return an empty response, which ends the call, for authentic events that route nowhere."""
    return str(VoiceResponse())


def empty() -> str:
    """Return an empty <Response/>, valid TwiML for voice and for messaging, which does nothing."""
    return str(MessagingResponse())


def sms_reply(text: str | None) -> str:
    """Return a messaging response with one reply message, or with none when `text` is empty."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


def _say(node: VoiceResponse | Gather, text: str) -> None:
    node.say(text, voice=SAY_VOICE, language=SAY_LANGUAGE)


def _add_menu(response: VoiceResponse, action_url: str) -> None:
    """Append the menu twice, then the call-back promise and a hang-up for a caller who presses nothing.

    Twilio moves on to the next verb when a Gather times out without a digit, so the second Gather
    is the one repeat and the goodbye runs only after both.
    """
    _add_gather(response, action_url, MENU_PROMPT)
    _add_gather(response, action_url, REPEAT_PROMPT + MENU_PROMPT)
    _say(response, NO_INPUT_GOODBYE)
    response.hangup()


def _add_gather(response: VoiceResponse, action_url: str, prompt: str) -> None:
    gather = Gather(num_digits=1, action=action_url, method="POST", timeout=GATHER_TIMEOUT_SECONDS)
    _say(gather, prompt)
    response.append(gather)
