"""Codes the hotline accepts for sources, categories, needs, flags and statuses, with their labels.

Each label map gives the Simplified Chinese label first and the English one second; the API and the
pages pick one by the request's language.
"""

from __future__ import annotations

SOURCES = {
    "resident": ("居民来电", "Resident call"),
    "elderly_advisor": ("养老顾问", "Elderly-care advisor"),
    "assistance_advisor": ("救助顾问", "Social-assistance advisor"),
    "community_worker": ("社区工作者", "Community worker"),
    "shequyun": ("社区云", "Shequyun platform"),
}
REFERRAL_SOURCES = ("elderly_advisor", "assistance_advisor", "community_worker", "shequyun")

CHANNELS = {
    "phone": ("电话", "Phone"),
    "referral_api": ("转介接口", "Referral API"),
    "portal": ("转介门户", "Referral portal"),
    "shequyun": ("社区云", "Shequyun"),
    "walk_in": ("现场", "Walk-in"),
    "sms": ("短信", "SMS"),
}

CATEGORIES = {
    "consultation": ("治丧咨询", "Consultation"),
    "agency_service": ("代理服务", "Agency service"),
    "assisted_application": ("身故一件事帮办", "Assisted application"),
    "complaint": ("投诉", "Complaint"),
    "eco_burial": ("生态葬", "Eco-burial"),
    "callback": ("回电", "Call-back"),
}
REFERRAL_CATEGORIES = ("consultation", "agency_service", "assisted_application", "eco_burial", "complaint")

NEEDS = {
    "body_transport": ("遗体接运", "Body transport"),
    "funeral_arrangement": ("治丧安排", "Funeral arrangement"),
    "subsidy_info": ("补贴咨询", "Subsidy information"),
    "death_procedures": ("身后事办理", "Death procedures"),
    "eco_burial": ("生态安葬", "Eco-burial"),
    "ash_storage": ("骨灰寄存", "Ash storage"),
}

FLAGS = {
    "solitary_elderly": ("独居老人", "Elderly living alone"),
    "childless_elderly": ("孤寡老人", "Childless elderly"),
    "low_income": ("低保/特困", "Low income"),
    "no_smartphone": ("无智能手机", "No smartphone"),
    "disabled": ("残疾人", "Disabled"),
}

DEATH_PLACES = {
    "home": ("家中", "At home"),
    "hospital": ("医院", "Hospital"),
    "nursing_home": ("养老机构", "Nursing home"),
    "other": ("其他场所", "Elsewhere"),
}

STATUSES = {
    "new": ("待受理", "New"),
    "in_progress": ("处理中", "In progress"),
    "dispatching": ("派单中", "Dispatching"),
    "dispatched": ("已派单", "Dispatched"),
    "waiting": ("等待回复", "Waiting"),
    "resolved": ("已办结", "Resolved"),
    "closed": ("已关闭", "Closed"),
    "cancelled": ("已撤销", "Cancelled"),
}
OPEN_STATUSES = ("new", "in_progress", "dispatching", "dispatched", "waiting")
FINAL_STATUSES = ("resolved", "closed", "cancelled")

# Status changes an operator may make; dispatch moves tickets into dispatching and dispatched itself.
TRANSITIONS = {
    "new": ("in_progress", "waiting", "resolved", "cancelled"),
    "in_progress": ("waiting", "resolved", "cancelled"),
    "dispatching": ("in_progress", "waiting", "cancelled"),
    "dispatched": ("in_progress", "waiting", "resolved", "cancelled"),
    "waiting": ("in_progress", "resolved", "cancelled"),
    "resolved": ("closed", "in_progress"),
    "closed": (),
    "cancelled": (),
}

PRIORITIES = ("P1", "P2", "P3", "P4")

AGENCY_KINDS = ("funeral_home", "agency")
AGENCY_STATUSES = ("pending", "approved", "watch", "suspended", "revoked")
OFFER_STATES = ("pending", "accepted", "declined", "timed_out", "cancelled")
DECLINE_REASONS = {
    "no_vehicle": ("车辆不足", "No vehicle free"),
    "no_staff": ("人手不足", "No staff free"),
    "out_of_area": ("超出服务范围", "Outside our service area"),
    "service_not_offered": ("不提供所需服务", "Service not offered"),
    "other": ("其他原因", "Other reason"),
}
ROLES = ("operator", "supervisor", "admin")
SLA_TARGETS = {
    "first_response": ("首次响应", "First response"),
    "dispatch_accept": ("派单接单", "Dispatch accepted"),
    "on_site": ("到场接运", "On site"),
    "resolution": ("办结", "Resolution"),
    "follow_up": ("回访", "Follow-up"),
}

SLA_STATES = {
    "running": ("计时中", "Running"),
    "paused": ("已暂停", "Paused"),
    "met": ("已达成", "Met"),
    "breached": ("已超时", "Breached"),
    "cancelled": ("已取消", "Cancelled"),
}
# Labels of the party that must act before an SLA clock runs out.
CLOCK_OWNERS = {
    "hotline": ("热线", "Hotline"),
    "agency": ("代理机构", "Agency"),
}


def label(mapping: dict[str, tuple[str, str]], code: str, language: str = "zh") -> str:
    """Return the label of `code` in the given language, or the code itself when it has none."""
    labels = mapping.get(code)
    if labels is None:
        return code
    return labels[1] if language.startswith("en") else labels[0]
