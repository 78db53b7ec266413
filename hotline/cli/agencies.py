"""`hotline agencies ...`: the agency registry from the command line, in Chinese like the pages.

Changes name the staff member who makes them (`--by`). The same roles as in the API apply: admins
register and edit agencies, and supervisors and admins change the vetting status.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import click
from babel.support import Translations
from sqlmodel import Session, select

from hotline import agencies
from hotline.agency_fields import SERVICES
from hotline.clock import isoformat, local, now
from hotline.config import ConfigError
from hotline.dispatch import withdrawals
from hotline.i18n import CHINESE, TRANSLATIONS_DIR
from hotline.models import Agency, Town, User
from hotline.validation import InputError
from hotline.vocabulary import AGENCY_KINDS, DECLINE_REASONS, label

LIST_HEADERS = ("编号", "名称", "类型", "状态", "服务街镇", "容量", "接单手机", "备案到期", "执照到期", "可派单")


@click.group("agencies")
def agencies_group() -> None:
    """殡葬代理机构登记：查看、登记、修改、审核状态与历史。"""


@agencies_group.command("list")
@click.option("--status", type=click.Choice(list(agencies.STATUSES)), help="只列出此审核状态的机构。")
def list_command(status: str | None) -> None:
    """以表格列出全部机构。"""
    with _transaction() as (session, runtime):
        query = select(Agency).order_by(Agency.kind, Agency.id)
        if status:
            query = query.where(Agency.status == status)
        rows = session.exec(query).all()
        today = local(now(), runtime.settings.timezone).date()
        towns = _town_names(session)
        table = [_list_row(agency, towns, today) for agency in rows]
    for line in format_table(LIST_HEADERS, table):
        click.echo(line)


def _field_options(required: bool) -> Callable:
    """Build the options of every registration field. With `required`, those every agency needs are required."""
    options = [
        click.option("--name", required=required, help="机构名称（唯一）。"),
        click.option("--kind", type=click.Choice(AGENCY_KINDS), required=required,
                     help="agency 为殡葬代理机构，funeral_home 为区殡仪馆自有队伍。"),
        click.option("--credit-code", help="统一社会信用代码，18 位，校验第 18 位校验码（代理机构必填）。"),
        click.option("--filing-number", help="备案编号（代理机构必填）。"),
        click.option("--filing-expires-on", metavar="YYYY-MM-DD",
                     help="备案有效期至；当日起停止派单（代理机构必填）。"),
        click.option("--licence-expires-on", metavar="YYYY-MM-DD",
                     help="营业执照有效期至；当日起停止派单。不填表示长期。"),
        click.option("--town", "towns", multiple=True, required=required,
                     help="服务街镇，名称或统计代码，可多次给出；* 表示全区。"),
        click.option("--service", "services", multiple=True, required=required, type=click.Choice(SERVICES),
                     help="提供的服务，可多次给出。"),
        click.option("--price-list-url", help="明码标价价目表的网址（http 或 https，代理机构必填）。"),
        click.option("--duty-hours", metavar="HH:MM-HH:MM",
                     help="每日值守时段，例如 08:00-20:00；全天写 00:00-24:00。"),
        click.option("--capacity", type=int, help="同时承接的派单数上限（0–100，默认 1）。"),
        click.option("--contact-phone", required=required, help="接收派单短信的手机号。"),
        click.option("--other-phone", "other_phones", multiple=True, help="其他联系电话（座机可带区号），可多次给出。"),
        click.option("--by", "username", required=True, help="操作人的用户名（管理员）。"),
    ]

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@agencies_group.command("create")
@_field_options(required=True)
def create_command(username: str, **options) -> None:
    """登记一家机构，状态为待审核。"""
    with _transaction() as (session, _runtime):
        user = _staff(session, username, agencies.CREATE_ROLES)
        agency = _apply(lambda: agencies.create_agency(session, _given(options), f"user:{user.id}", user.id, now()))
        click.echo(f"已登记 #{agency.id} {agency.name}（{label(agencies.STATUSES, agency.status)}）")


@agencies_group.command("update")
@click.argument("name_or_id")
@_field_options(required=False)
def update_command(name_or_id: str, username: str, **options) -> None:
    """修改机构的登记信息，只改给出的项；给空字符串可清除可选项，例如 --licence-expires-on ""。"""
    fields = _given(options)
    if not fields:
        raise click.UsageError("没有要修改的项：请至少给出一个选项。")
    with _transaction() as (session, _runtime):
        user = _staff(session, username, agencies.CREATE_ROLES)
        agency = _agency(session, name_or_id)
        _apply(lambda: agencies.update_agency(session, agency, fields, f"user:{user.id}"))
        click.echo(f"已修改 #{agency.id} {agency.name}：{'、'.join(sorted(fields))}")


# command -> (status it sets, help text)
STATUS_COMMANDS = {
    "approve": ("approved", "审核通过（准入），或解除观察、恢复派单。"),
    "watch": ("watch", "列入观察期；观察期内照常派单。"),
    "suspend": ("suspended", "暂停派单；待接单的派单随即撤回并改派。"),
    "revoke": ("revoked", "撤销资格；撤销后不能恢复，待接单的派单随即撤回并改派。"),
}


def _status_command(name: str, to_status: str, summary: str) -> click.Command:
    @click.command(name, help=summary)
    @click.argument("name_or_id")
    @click.option("--reason", required=True, help="原因，记入状态历史。")
    @click.option("--by", "username", required=True, help="操作人的用户名（值班主管或管理员）。")
    def command(name_or_id: str, reason: str, username: str) -> None:
        with _transaction() as (session, runtime):
            user = _staff(session, username, agencies.STATUS_ROLES)
            agency = _agency(session, name_or_id)
            outcome = _apply(lambda: withdrawals.change_agency_status(session, runtime, agency, to_status, reason,
                                                                      f"user:{user.id}", user.id, now()))
            change = outcome.change
            lines = [f"#{agency.id} {agency.name}：{label(agencies.STATUSES, change.from_status)} → "
                     f"{label(agencies.STATUSES, change.to_status)}"]
            lines += _offer_lines(outcome)
        for line in lines:
            click.echo(line)

    return command


def _offer_lines(outcome: withdrawals.StatusChangeOutcome) -> list[str]:
    """Word the offers a status change withdrew and the accepted ones it left with the agency."""
    lines = []
    if outcome.withdrawn:
        offers = "、".join(f"{ticket.number}（派单码 {offer.code}）" for offer, ticket in outcome.withdrawn)
        lines.append(f"已撤回 {len(outcome.withdrawn)} 个待接单的派单并短信告知该机构，"
                     f"各工单随即重新自动派单：{offers}")
    if outcome.still_accepted:
        offers = "、".join(f"{ticket.number}（派单码 {offer.code}）" for offer, ticket in outcome.still_accepted)
        lines.append(f"该机构已接单、尚未办结的工单 {len(outcome.still_accepted)} 个：{offers}。"
                     "如需换机构，请在工单页面撤回派单。")
    return lines


for _name, (_status, _summary) in STATUS_COMMANDS.items():
    agencies_group.add_command(_status_command(_name, _status, _summary))


@agencies_group.command("history")
@click.argument("name_or_id")
def history_command(name_or_id: str) -> None:
    """列出机构的审核状态历史：时间、原状态、新状态、原因、操作人。"""
    with _transaction() as (session, runtime):
        agency = _agency(session, name_or_id)
        rows = agencies.history(session, agency.id)
        tz = runtime.settings.timezone
        table = [(isoformat(change.at.replace(microsecond=0), tz),
                  label(agencies.STATUSES, change.from_status) if change.from_status else "（登记）",
                  label(agencies.STATUSES, change.to_status), change.reason, username or change.actor)
                 for change, username in rows]
    click.echo(f"#{agency.id} {agency.name}")
    for line in format_table(("时间", "原状态", "新状态", "原因", "操作人"), table):
        click.echo(line)


FAIRNESS_HEADERS = ("编号", "名称", "派单", "自动", "人工", "自动派单占比", "接单", "拒单", "超时", "撤回",
                    "接单率", "接单用时中位数", "拒单原因", "时限超时")


@agencies_group.command("fairness")
@click.option("--since", default="30d", show_default=True,
              help="统计最近几天（按北京时间整天计，含今天），写作 30d。")
def fairness_command(since: str) -> None:
    """派单公平性报告：各机构的派单数、自动派单占比、接单/拒单/超时、接单用时中位数。"""
    from hotline.reports.fairness import fairness_report, parse_since

    try:
        days = parse_since(since)
    except ValueError:
        raise click.BadParameter(f"{since!r} 无效，请写 1 到 366 之间的天数，例如 30d。", param_hint="--since") \
            from None
    with _transaction() as (session, runtime):
        period, rows = fairness_report(session, now(), days, runtime.settings.timezone)
    click.echo(f"统计期：{period.first_day.isoformat()} 至 {period.last_day.isoformat()}（北京时间，共 {days} 天）")
    for line in format_table(FAIRNESS_HEADERS, [_fairness_cells(row) for row in rows]):
        click.echo(line)


def _fairness_cells(row) -> tuple[str, ...]:
    figures = row.figures
    reasons = "、".join(f"{label(DECLINE_REASONS, code)}{count}" for code, count in sorted(row.decline_codes.items()))
    return (str(figures.agency_id), figures.name, str(figures.offers), str(row.automatic), str(row.manual),
            _percent(row.share_percent), str(figures.accepted), str(figures.states.get("declined", 0)),
            str(figures.states.get("timed_out", 0)), str(figures.states.get("cancelled", 0)),
            _percent(figures.acceptance_rate),
            "—" if row.median_accept_minutes is None else f"{row.median_accept_minutes} 分钟",
            reasons or "—", str(figures.breaches))


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value}%"


@agencies_group.command("remind")
def remind_command() -> None:
    """立即执行一次到期提醒（平时由调度器每天 09:00 执行），输出新写入的提醒数。"""
    from hotline.agency_reminders import send_expiry_reminders

    click.echo(send_expiry_reminders(_runtime(), now()))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lay out columns padded to the widest cell, counting a CJK character as two columns."""
    cells = [list(headers)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(_width(row[column]) for row in cells) for column in range(len(headers))]
    return ["  ".join(cell + " " * (widths[column] - _width(cell)) for column, cell in enumerate(row)).rstrip()
            for row in cells]


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(character) in "WF" else 1 for character in text)


def _list_row(agency: Agency, towns: dict[str, str], today) -> tuple[str, ...]:
    served = "全区" if "*" in (agency.towns or []) else "、".join(towns.get(code, code) for code in agency.towns or [])
    return (str(agency.id), agency.name, label(agencies.KINDS, agency.kind), label(agencies.STATUSES, agency.status),
            served, str(agency.capacity), agency.contact_phone,
            agency.filing_expires_on.isoformat() if agency.filing_expires_on else "—",
            agency.licence_expires_on.isoformat() if agency.licence_expires_on else "长期",
            "是" if agencies.may_receive_offers(agency, today) else "否")


def _given(options: dict) -> dict:
    """Keep the options that were given, as the fields that agencies.create_agency and update_agency read."""
    fields = {}
    for name, value in options.items():
        if value is None or value == ():
            continue
        fields[name] = list(value) if isinstance(value, tuple) else value
    return fields


def _apply(change: Callable):
    """Run a registry change; turn a rejected input into a message in Chinese."""
    try:
        return change()
    except InputError as error:
        raise click.ClickException(chinese_message(error)) from None


def chinese_message(error: InputError) -> str:
    """Translate the error's message with the Chinese catalogue, as the API does for Chinese callers."""
    translations = Translations.load(str(TRANSLATIONS_DIR), [CHINESE])
    text = translations.gettext(error.template)
    return text % error.params if error.params else text


def _staff(session: Session, username: str, roles: tuple[str, ...]) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None or not user.active:
        raise click.ClickException(f"用户 {username} 不存在或已停用。")
    if user.role not in roles:
        allowed = "、".join(roles)
        raise click.ClickException(f"用户 {username} 的角色是 {user.role}，此操作只允许 {allowed}。")
    return user


def _agency(session: Session, name_or_id: str) -> Agency:
    agency = agencies.find_agency(session, name_or_id)
    if agency is None:
        raise click.ClickException(f"机构 {name_or_id} 不存在；用 hotline agencies list 查看编号和名称。")
    return agency


def _town_names(session: Session) -> dict[str, str]:
    return {town.code: town.name for town in session.exec(select(Town)).all()}


def _runtime():
    from hotline.runtime import current

    try:
        return current()
    except ConfigError as error:
        raise click.ClickException(f"配置无效：{error}") from None


@contextmanager
def _transaction() -> Iterator[tuple[Session, object]]:
    """Open a transaction of the process's runtime. An exception inside rolls everything back."""
    runtime = _runtime()
    with runtime.transaction() as session:
        yield session, runtime
