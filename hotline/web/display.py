"""How the staff pages word things: SLA countdowns, actors, events, clocks and the rule trace.

Labels of codes are (Chinese, English) pairs like those in hotline.vocabulary. Sentences are gettext
templates, so the catalogue contains them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask_babel import gettext

from hotline.clock import as_aware_utc, local
from hotline.vocabulary import CATEGORIES, FLAGS, NEEDS, SLA_TARGETS, SOURCES, STATUSES, label

# An SLA clock turns amber this long before it is due, unless the clock carries its own warn_at.
DEFAULT_WARNING_LEAD = timedelta(hours=2)

EVENT_KINDS = {
    "created": ("建单", "Created"),
    "priority": ("优先级变更", "Priority changed"),
    "status": ("状态变更", "Status changed"),
    "claimed": ("签收", "Claimed"),
    "note": ("备注", "Note"),
    "referrer_note": ("给转介人的备注", "Note for the referrer"),
    "call_attached": ("来电并入", "Call attached"),
    "call_status": ("通话状态", "Call status"),
    "callback_needed": ("需回电", "Call-back needed"),
    "menu_choice": ("语音菜单选择", "Menu choice"),
    "recording": ("录音", "Recording"),
    "offer_sent": ("派单", "Offer sent"),
    "offer_accepted": ("机构接单", "Offer accepted"),
    "offer_declined": ("机构拒单", "Offer declined"),
    "offer_timed_out": ("派单超时", "Offer timed out"),
    "offer_cancelled": ("派单撤回", "Offer withdrawn"),
    "agency_arrived": ("机构到达现场", "Agency on site"),
    "dispatch_escalated": ("派单升级至主管", "Escalated to supervisor"),
    "sla_started": ("时限开始计时", "SLA clock started"),
    "sla_met": ("时限达成", "SLA target met"),
    "sla_paused": ("时限暂停", "SLA clock paused"),
    "sla_resumed": ("时限恢复", "SLA clock resumed"),
    "sla_recomputed": ("时限重算", "SLA clock recomputed"),
    "sla_breached": ("时限超时", "SLA breached"),
    "sla_warning": ("时限预警", "SLA warning"),
    "sla_provisional_reviewed": ("临时时限复核", "Provisional deadline reviewed"),
    "referral_resent": ("转介重发，内容有变", "Referral resent with changes"),
    "redispatch": ("重新派单", "Dispatched again"),
    "dispatch_held": ("等待机构空出", "Waiting for a free agency"),
}
# Referral body fields named in a "referral_resent" event; other paths are shown as they are.
REFERRAL_FIELDS = {
    "category": ("类别", "Category"),
    "needs": ("需求", "Needs"),
    "flags": ("特殊情况", "Circumstances"),
    "note": ("备注", "Note"),
    "resident.name": ("居民姓名", "Resident's name"),
    "resident.phone": ("居民电话", "Resident's phone"),
    "resident.town": ("街镇", "Town"),
    "resident.committee": ("居委/村委", "Committee"),
    "resident.address": ("地址", "Address"),
    "referrer.name": ("转介人姓名", "Referrer's name"),
    "referrer.phone": ("转介人电话", "Referrer's phone"),
    "referrer.org": ("转介单位", "Referrer's organisation"),
    "deceased.died_at": ("死亡时间", "Time of death"),
    "deceased.place": ("死亡地点", "Place of death"),
}
# Referral fields whose values are codes, shown by their labels.
REFERRAL_FIELD_CODES = {"category": CATEGORIES, "needs": NEEDS, "flags": FLAGS}
REMOVED = ("（已删除）", " (removed)")
OFFER_STATES = {
    "pending": ("待接单", "Pending"),
    "accepted": ("已接单", "Accepted"),
    "declined": ("已拒单", "Declined"),
    "timed_out": ("已超时", "Timed out"),
    "cancelled": ("已撤回", "Withdrawn"),
}
LOGIN_OUTCOMES = {
    "ok": ("成功", "Logged in"),
    "bad_password": ("密码错误", "Wrong password"),
    "unknown_user": ("无此用户", "Unknown user"),
    "inactive": ("账户已停用", "Account disabled"),
    "locked": ("已锁定", "Locked out"),
}
SYSTEM_ACTORS = {
    "system": ("系统", "System"),
    "rules": ("规则引擎", "Rules"),
    "twilio": ("电话系统", "Phone system"),
    "dispatch": ("派单", "Dispatch"),
    "seed": ("演示数据", "Demo data"),
}


def show_time(value: datetime | None, tz) -> str:
    """Format an instant in the hotline's zone to the minute, or return "" for None."""
    if value is None:
        return ""
    return local(value, tz).strftime("%Y-%m-%d %H:%M")


def duration_text(seconds: float, language: str) -> str:
    """Say a length of time to the minute: 2天3小时, 1小时20分, 5分 (2 d 3 h, 1 h 20 min, 5 min)."""
    minutes = int(abs(seconds)) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    units = (("天", " d"), ("小时", " h"), ("分", " min"))
    parts = [(days, units[0]), (hours, units[1]), (minutes, units[2])]
    shown = [(value, unit) for value, unit in parts if value] or [(0, units[2])]
    if days:
        shown = shown[:2]
    if language == "en":
        return " ".join(f"{value}{unit[1]}" for value, unit in shown)
    return "".join(f"{value}{unit[0]}" for value, unit in shown)


def sla_state(due_at: datetime | None, warn_at: datetime | None, breached: bool, at: datetime) -> str:
    """none, ok, warning (amber) or breached (red), judged at `at`; due_at <= at counts as breached."""
    if due_at is None:
        return "none"
    due_at = as_aware_utc(due_at)
    if breached or due_at <= at:
        return "breached"
    warning_from = as_aware_utc(warn_at) if warn_at is not None else due_at - DEFAULT_WARNING_LEAD
    return "warning" if at >= warning_from else "ok"


def countdown_text(due_at: datetime | None, at: datetime, language: str) -> str:
    if due_at is None:
        return ""
    seconds = (as_aware_utc(due_at) - at).total_seconds()
    duration = duration_text(seconds, language)
    if seconds > 0:
        return gettext("%(duration)s left", duration=duration)
    return gettext("%(duration)s overdue", duration=duration)


def actor_text(actor: str, users: Mapping[int, str], agencies: Mapping[int, str], language: str) -> str:
    """Name who made a change: a staff member, a referral source, an agency or a part of the system."""
    kind, _, key = actor.partition(":")
    if kind == "user" and key.isdigit():
        return users.get(int(key), actor)
    if kind == "agency" and key.isdigit():
        return agencies.get(int(key), actor)
    if kind == "source":
        return label(SOURCES, key, language)
    if actor in SYSTEM_ACTORS:
        return label(SYSTEM_ACTORS, actor, language)
    return actor


def event_change(kind: str, from_value: str | None, to_value: str | None, data: Mapping[str, Any] | None,
                 users: Mapping[int, str], tz, language: str) -> str:
    """The what of an event as one short line, such as "待受理 → 处理中" or "办结 · 2026-12-07 13:00"."""
    codes = {"status": STATUSES, "created": CATEGORIES, "menu_choice": CATEGORIES}.get(kind)
    if codes is not None:
        from_value = label(codes, from_value, language) if from_value else from_value
        to_value = label(codes, to_value, language) if to_value else to_value
    from_value, to_value = _instant_text(from_value, tz), _instant_text(to_value, tz)
    if kind == "referral_resent" and to_value:
        to_value = _resent_changes(to_value.split(", "), (data or {}).get("payload") or {}, language)
    if kind == "claimed" and to_value and to_value.isdigit():
        to_value = users.get(int(to_value), to_value)
    parts = []
    target = (data or {}).get("target")
    if target:
        parts.append(label(SLA_TARGETS, target, language))
    if from_value and to_value:
        parts.append(f"{from_value} → {to_value}")
    elif from_value or to_value:
        parts.append(from_value or to_value)
    return " · ".join(parts)


def _resent_changes(paths: list[str], payload: Mapping[str, Any], language: str) -> str:
    """Name each changed field with its new value, such as "居民电话：13912345678、备注：改为上午来电".

    A code is shown by its label, and a field the resend left out or emptied is marked as removed.
    """
    english = language == "en"
    parts = []
    for path in paths:
        value: Any = payload
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        codes = REFERRAL_FIELD_CODES.get(path, {})
        if isinstance(value, list):
            value = list_separator(language).join(label(codes, str(item), language) for item in value)
        elif isinstance(value, str):
            value = label(codes, value, language)
        if value in (None, ""):
            new_value = REMOVED[1] if english else REMOVED[0]
        else:
            new_value = f": {value}" if english else f"：{value}"
        parts.append(label(REFERRAL_FIELDS, path, language) + new_value)
    return list_separator(language).join(parts)


def list_separator(language: str) -> str:
    """Return the separator of a list in running text: 、 in Chinese, a comma in English."""
    return ", " if language == "en" else "、"


def _instant_text(value: str | None, tz) -> str | None:
    """Show an ISO 8601 instant stored in an event to the minute; leave any other text as it is."""
    if not value or len(value) < 16 or value[4:5] != "-" or "T" not in value:
        return value
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return value
    return show_time(instant, tz) if instant.tzinfo is not None else value


def clock_arithmetic(clock, tz, language: str, calendars: Mapping[str, Any] | None = None) -> str:
    """Show how a clock's due instant was reached: start + working time + time paused = due.

    The calendar is named by its label in `calendars` (hotline.sla.calendars), else by its id.
    """
    calendar = (calendars or {}).get(clock.calendar)
    return gettext(
        "started %(start)s + %(duration)s of %(calendar)s time + %(paused)s paused = due %(due)s",
        start=show_time(clock.started_at, tz), duration=duration_text(clock.duration_seconds, language),
        calendar=calendar.label(language) if calendar is not None else clock.calendar,
        paused=duration_text(clock.paused_seconds, language),
        due=show_time(clock.due_at, tz),
    )


def clock_state(clock) -> str:
    """A running or met clock that was breached shows as breached, as in the API."""
    if clock.state in ("running", "met") and clock.breached_at is not None:
        return "breached"
    return clock.state


def rule_sentences(trace: list[dict[str, Any]], rules: Mapping[str, Any], language: str) -> list[dict[str, Any]]:
    """Turn the rule trace into one sentence per rule, matched rules first marked as such."""
    sentences = []
    for entry in trace or []:
        rule = rules.get(entry.get("rule"))
        description = entry.get("rule", "")
        if rule is not None:
            description = (rule.description_en or rule.description) if language == "en" else rule.description
        changes = entry.get("changes") or {}
        if not entry.get("matched"):
            text = gettext("Rule %(rule)s (%(description)s) did not match.", rule=entry.get("rule"),
                           description=description)
        elif changes:
            text = gettext("Rule %(rule)s (%(description)s) matched and set %(effects)s.", rule=entry.get("rule"),
                           description=description, effects=_effects(changes, language))
        else:
            text = gettext("Rule %(rule)s (%(description)s) matched but changed nothing.", rule=entry.get("rule"),
                           description=description)
        sentences.append({"matched": bool(entry.get("matched")), "text": text})
    return sentences


def _effects(changes: Mapping[str, Any], language: str) -> str:
    parts = []
    if "priority" in changes:
        parts.append(gettext("priority %(priority)s", priority=changes["priority"]))
    if "raise" in changes:
        parts.append(gettext("a raise of %(steps)s to %(priority)s", steps=changes["raise"],
                             priority=changes["raised_to"]))
    if "queue_rank" in changes:
        parts.append(gettext("queue rank %(rank)s", rank=changes["queue_rank"]))
    if "add_tags" in changes:
        parts.append(gettext("tags %(tags)s", tags=", ".join(changes["add_tags"])))
    return list_separator(language).join(parts)
