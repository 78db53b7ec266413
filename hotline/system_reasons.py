"""The fixed reasons the system writes into ticket events, offers and agency histories, and their English.

Events store their reason as Chinese text, which exports, the API and older rows keep as written. Pages
in English show the English of a reason found here. Reasons that embed names or lists, such as an offer's
choice of agency, are not found and show as stored.
"""

from __future__ import annotations

from typing import Literal

CALLER_HAS_OPEN_TICKET = "同一来电号码已有未办结工单"
MENU_CHOICE_REEVALUATED = "来电菜单选择后重新评估"
CALL_ENDED_BEFORE_CHOICE = "来电在菜单选择前结束，需回电"
OPERATOR_TOOK_OVER = "话务员已接手或工单已结束"
CLAIMED = "签收"
OFFERED_TO_AGENCY = "派单给代理机构"
WAITING_FOR_FREE_AGENCY = "等待代理机构空出"
WAITING_FOR_MANUAL_DISPATCH = "等待人工安排派单"
AGENCY_ACCEPTED = "代理机构已接单"
AGENCY_DID_NOT_ACCEPT = "代理机构未在时限内接单"
AGENCY_REGISTERED = "新登记"
HOLIDAY_DATA_ADDED = "节假日数据已补充"
NO_AGENCY_SUPERVISOR_ALERTED = "无可派单的代理机构，已通知值班主管"

ENGLISH = {
    CALLER_HAS_OPEN_TICKET: "The caller's number already has an open ticket",
    MENU_CHOICE_REEVALUATED: "Evaluated again after the caller's menu choice",
    CALL_ENDED_BEFORE_CHOICE: "The call ended before a menu choice; call the caller back",
    OPERATOR_TOOK_OVER: "An operator took over the ticket, or it was closed",
    CLAIMED: "Claimed",
    OFFERED_TO_AGENCY: "Offered to an agency",
    WAITING_FOR_FREE_AGENCY: "Waiting for an agency to become free",
    WAITING_FOR_MANUAL_DISPATCH: "Waiting for the supervisor to dispatch by hand",
    AGENCY_ACCEPTED: "The agency accepted",
    AGENCY_DID_NOT_ACCEPT: "The agency did not accept within the time limit",
    AGENCY_REGISTERED: "New registration",
    HOLIDAY_DATA_ADDED: "Holiday data was added",
    NO_AGENCY_SUPERVISOR_ALERTED: "No agency can take the ticket; the on-duty supervisor was alerted",
}


def worded(reason: str | None, language: Literal["zh", "en"]) -> str:
    """Return a stored reason in the page's language: its English when known, else as stored ("" for None)."""
    if not reason:
        return ""
    if language == "en":
        return ENGLISH.get(reason, reason)
    return reason
