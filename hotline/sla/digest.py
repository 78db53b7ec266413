"""Supervisor digests of the SLA sweep: one notice per kind (breach or warning) for each transaction that flags clocks.

A sweep that flags one clock sends the same text as a single-clock notice. A sweep that flags many
sends one notice with the count, the number of tickets and the first DIGEST_LIMIT clocks by due
instant, so the longest overdue or the soonest due come first. `GET /api/v1/sla/overdue` and
`GET /api/v1/sla/at-risk` list them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from hotline import outbox
from hotline.clock import SHANGHAI, local
from hotline.sla.clocks import TARGET_LABELS

# Clocks listed by ticket number in one digest. Ten keep the longest digest under 500 characters.
DIGEST_LIMIT = 10
BREACH = "breach"
WARNING = "warning"


@dataclass(frozen=True)
class FlaggedClock:
    """A clock the sweep has just claimed as breached or warned, with its ticket's number."""

    clock_id: int
    ticket_id: int
    number: str
    target: str
    owner: str
    warn_at: datetime | None
    due_at: datetime


def queue_digest(session: Session, kind: str, flagged: list[FlaggedClock], now: datetime) -> None:
    """Queue one supervisor notice for the clocks of `kind` flagged in this transaction; nothing when none.

    The idempotency key `sla-<kind>:<sweep instant>:<lowest clock id>` does not repeat, because the
    claim that produced `flagged` hands each breach or warning to one transaction only. A clock is
    claimed again only after a recompute withdrew its breach, and then by a later sweep.
    """
    if not flagged:
        return
    ordered = sorted(flagged, key=lambda clock: (clock.due_at, clock.number, clock.clock_id))
    tickets = {clock.ticket_id for clock in ordered}
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    first_id = min(clock.clock_id for clock in ordered)
    outbox.add_message(session, channel="supervisor", recipient=outbox.SUPERVISOR, body=digest_body(kind, ordered),
                       idempotency_key=f"sla-{kind}:{stamp}:{first_id}",
                       ticket_id=next(iter(tickets)) if len(tickets) == 1 else None)


def digest_body(kind: str, ordered: list[FlaggedClock]) -> str:
    """Word the notice for `ordered` clocks of `kind`, listing at most DIGEST_LIMIT of them."""
    if len(ordered) == 1:
        return _single_body(kind, ordered[0])

    items = [_item(kind, clock) for clock in ordered[:DIGEST_LIMIT]]
    unlisted = len(ordered) - len(items)
    if unlisted:
        items.append(f"另有 {unlisted} 项未列出")
    listed = "；".join(items)
    tickets = len({clock.ticket_id for clock in ordered})
    if kind == BREACH:
        return (f"【59200496】{len(ordered)} 项时限已超时，涉及 {tickets} 张工单（时限为北京时间）：{listed}。"
                f"请在超时工单列表中逐一督办。")
    return (f"【59200496】{len(ordered)} 项时限即将超时，涉及 {tickets} 张工单（时限为北京时间）：{listed}。"
            f"请在即将超时工单列表中逐一跟进。")


def _single_body(kind: str, clock: FlaggedClock) -> str:
    # Same wording as clocks.breach_notice_body and clocks.warning_notice_body.
    label = TARGET_LABELS.get(clock.target, clock.target)
    due = _local_minute(clock.due_at)
    if kind == BREACH:
        return f"【59200496】工单 {clock.number} 的「{label}」已超时（时限 {due}，北京时间），请督办。"
    return (f"【59200496】工单 {clock.number} 的「{label}」（{_owner(clock)}负责）即将超时，"
            f"时限 {due}（北京时间），请跟进。")


def _item(kind: str, clock: FlaggedClock) -> str:
    label = TARGET_LABELS.get(clock.target, clock.target)
    due = _local_minute(clock.due_at)[5:]
    if kind == BREACH:
        return f"{clock.number}「{label}」{due}"
    return f"{clock.number}「{label}」{_owner(clock)}负责 {due}"


def _owner(clock: FlaggedClock) -> str:
    return "代理机构" if clock.owner == "agency" else "热线"


def _local_minute(instant: datetime) -> str:
    return local(instant, SHANGHAI).strftime("%Y-%m-%d %H:%M")
