"""A plain-text account of a ticket's SLA clocks: policy, calendar, pauses and the deadline arithmetic."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from hotline.clock import as_aware_utc, isoformat
from hotline.models import SlaClock, Ticket, TicketEvent
from hotline.sla.calendars import BusinessCalendar
from hotline.sla.clocks import TARGET_LABELS, clock_view, working_seconds
from hotline.sla.policies import PolicySet


def hms(seconds: int) -> str:
    """Format seconds as HH:MM:SS, hours may exceed 24."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def explain_ticket(
    session: Session, ticket: Ticket, policies: PolicySet, calendars: dict[str, BusinessCalendar], now: datetime
) -> list[str]:
    """Return the lines that describe each clock of `ticket`, in the order the clocks started."""
    lines = [f"工单 {ticket.number}  P{ticket.priority}  {ticket.category}  状态 {ticket.status}  "
             f"工单时限 {isoformat(ticket.due_at) or '-'}"]
    clocks = session.exec(select(SlaClock).where(SlaClock.ticket_id == ticket.id).order_by(SlaClock.id)).all()
    if not clocks:
        lines.append("  没有 SLA 计时。")
    for clock in clocks:
        lines.extend(_explain_clock(session, clock, policies, calendars.get(clock.calendar), now))
    return lines


def _explain_clock(
    session: Session, clock: SlaClock, policies: PolicySet, calendar: BusinessCalendar | None, now: datetime
) -> list[str]:
    view = clock_view(clock)
    policy = policies.by_id(clock.policy)
    lines = [
        "",
        f"[{clock.target}] {TARGET_LABELS.get(clock.target, clock.target)}  负责方 {clock.owner}  状态 {view['state']}",
        f"  策略 {clock.policy}" + (f"：{policy.description}" if policy else "（当前规则中已无此策略）"),
        f"  日历 {clock.calendar}" + (_calendar_text(calendar) if calendar else "（当前配置中已无此日历）"),
        f"  开始 {isoformat(clock.started_at)}",
        f"  时限 = 开始 + 时长 {hms(clock.duration_seconds)} + 暂停 {hms(clock.paused_seconds)}"
        f"（工作时间）= {isoformat(clock.due_at)}" + ("（临时：含节假日数据缺失的年份）" if clock.provisional else ""),
    ]
    if clock.warn_at is not None:
        lead = "-"
        if calendar is not None:
            lead = hms(calendar.elapsed(as_aware_utc(clock.warn_at), as_aware_utc(clock.due_at)).seconds)
        lines.append(f"  预警 {isoformat(clock.warn_at)}（时限前 {lead} 工作时间）"
                     + (f"，已于 {isoformat(clock.warned_at)} 预警" if clock.warned_at else ""))
    lines.extend(_pause_lines(session, clock))
    if clock.paused_at is not None:
        lines.append(f"  暂停中，自 {isoformat(clock.paused_at)} 起")
    if calendar is not None:
        used = working_seconds(clock, calendar, now)
        lines.append(f"  已计工作时间 {hms(used)}，剩余 {hms(max(clock.duration_seconds - used, 0))}")
    if clock.met_at is not None:
        lines.append(f"  达成 {isoformat(clock.met_at)}")
    if clock.breached_at is not None:
        lines.append(f"  超时，时限 {isoformat(clock.breached_at)}")
    return lines


def _calendar_text(calendar: BusinessCalendar) -> str:
    if calendar.always_open:
        return "（全天 24 小时，每天）"
    periods = ", ".join(f"{opens // 3600:02d}:{opens % 3600 // 60:02d}-{closes // 3600:02d}:{closes % 3600 // 60:02d}"
                        for opens, closes in calendar.periods)
    source = "，按国家法定节假日和调休" if calendar.use_chinese_calendar else ""
    return f"（{periods}{source}）"


def _pause_lines(session: Session, clock: SlaClock) -> list[str]:
    events = session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == clock.ticket_id)
        .where(TicketEvent.kind.in_(("sla_paused", "sla_resumed"))).order_by(TicketEvent.at, TicketEvent.id)
    ).all()
    lines = []
    paused_from = None
    for event in events:
        if (event.data or {}).get("target") != clock.target:
            continue
        if event.kind == "sla_paused":
            paused_from = event.at
        else:
            seconds = (event.data or {}).get("paused_seconds", 0)
            lines.append(f"  暂停 {isoformat(paused_from) if paused_from else '?'} 至 {isoformat(event.at)}，"
                         f"计入 {hms(seconds)} 工作时间")
            paused_from = None
    return lines
