"""`hotline sla ...`: compute deadlines and working time on the configured calendars, run the breach sweep."""

from __future__ import annotations

from datetime import datetime

import click

from hotline.clock import isoformat
from hotline.config import ConfigError, load_settings
from hotline.rules.expressions import RuleError
from hotline.sla.calendars import BusinessCalendar, add_with_pauses, load_calendars, parse_duration


@click.group("sla")
def sla() -> None:
    """SLA 时限：计算截止时间、工作时长，执行超时检查。"""


@sla.command("deadline")
@click.option("--start", required=True, help="计时开始时间，带时区偏移的 ISO 8601，例如 2026-02-13T16:00:00+08:00。")
@click.option("--duration", required=True, help="时长，例如 15m、4h、8h30m、90s、2d（d 为 24 小时）。")
@click.option("--calendar", "calendar_name", default="workday", show_default=True, help="calendars.yaml 中的日历名称。")
@click.option("--pause", "pauses", multiple=True, metavar="START/END",
              help="计时暂停的区间，两个 ISO 8601 时间以 / 分隔；可多次给出。")
def deadline_command(start: str, duration: str, calendar_name: str, pauses: tuple[str, ...]) -> None:
    """输出截止时间（北京时间，ISO 8601）；数据不全时在标准错误输出 (provisional)。"""
    calendar = _load_calendar(calendar_name)
    started = _parse_instant(start, "--start")
    try:
        seconds = parse_duration(duration)
    except ValueError as error:
        raise click.BadParameter(f"时长无效：{error}", param_hint="--duration") from None

    try:
        deadline = add_with_pauses(calendar, started, seconds, [_parse_pause(text) for text in pauses])
    except ValueError as error:
        raise click.BadParameter(f"暂停区间无效：{error}", param_hint="--pause") from None

    click.echo(isoformat(deadline.due_at, calendar.tz))
    if deadline.provisional:
        click.echo("(provisional)", err=True)


@sla.command("elapsed")
@click.option("--start", required=True, help="开始时间，带时区偏移的 ISO 8601。")
@click.option("--end", required=True, help="结束时间，带时区偏移的 ISO 8601。")
@click.option("--calendar", "calendar_name", default="workday", show_default=True, help="calendars.yaml 中的日历名称。")
def elapsed_command(start: str, end: str, calendar_name: str) -> None:
    """输出两个时间之间的工作时长，格式 HH:MM:SS（小时可超过 24）。"""
    calendar = _load_calendar(calendar_name)
    try:
        elapsed = calendar.elapsed(_parse_instant(start, "--start"), _parse_instant(end, "--end"))
    except ValueError as error:
        raise click.BadParameter(f"时间区间无效：{error}", param_hint="--end") from None

    hours, rest = divmod(elapsed.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    click.echo(f"{hours:02d}:{minutes:02d}:{seconds:02d}")
    if elapsed.provisional:
        click.echo("(provisional)", err=True)


@sla.command("sweep")
def sweep_command() -> None:
    """执行一次超时检查，输出本次新标记为超时的计时数量。"""
    from hotline.runtime import current
    from hotline.sla.sweep import sweep_breaches

    click.echo(sweep_breaches(current()))


@sla.command("explain")
@click.argument("number")
def explain_command(number: str) -> None:
    """逐项说明工单的 SLA 计时：策略、日历、暂停和时限的计算过程。"""
    from sqlmodel import select

    from hotline.clock import now
    from hotline.models import Ticket
    from hotline.runtime import current
    from hotline.sla.explain import explain_ticket

    runtime = current()
    with runtime.transaction() as session:
        ticket = session.exec(select(Ticket).where(Ticket.number == number)).first()
        if ticket is None:
            raise click.ClickException(f"工单 {number} 不存在。")
        lines = explain_ticket(session, ticket, runtime.component("sla_policies"), runtime.component("calendars"),
                               now())
    for line in lines:
        click.echo(line)


def _load_calendar(name: str) -> BusinessCalendar:
    try:
        settings = load_settings()
        calendars = load_calendars(settings.rules_dir / "calendars.yaml", settings.timezone)
    except (ConfigError, RuleError) as error:
        raise click.ClickException(f"配置无效：{error}") from None
    if name not in calendars:
        raise click.BadParameter(f"日历 {name!r} 不存在；可用：{', '.join(sorted(calendars))}", param_hint="--calendar")
    return calendars[name]


def _parse_instant(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        message = f"时间 {text!r} 无效：需要 ISO 8601，例如 2026-02-13T16:00:00+08:00"
        raise click.BadParameter(message, param_hint=option) from None
    if value.tzinfo is None:
        raise click.BadParameter(f"时间 {text!r} 缺少时区偏移：请加上 +08:00", param_hint=option)
    return value


def _parse_pause(text: str) -> tuple[datetime, datetime]:
    begin, separator, end = text.partition("/")
    if not separator:
        raise click.BadParameter(f"暂停区间 {text!r} 无效：需要 START/END 两个时间", param_hint="--pause")
    return _parse_instant(begin, "--pause"), _parse_instant(end, "--pause")
