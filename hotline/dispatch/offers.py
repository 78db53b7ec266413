"""Dispatch offers: one eligible agency at a time, by SMS code or signed link, with a deadline.

Every function here is safe to run twice, because RQ delivers at least once:
1. `(ticket_id, attempt)` is unique, so two workers making the same attempt insert one offer;
2. the SMS is an outbox row keyed by the offer, so one offer sends one SMS;
3. replies and time-outs move an offer out of `pending` with a conditional UPDATE, so only one wins.
"""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from hotline import system_reasons
from hotline.agencies import duty_ends_at, out_of_dispatch_reason
from hotline.clock import local
from hotline.dispatch import targets
from hotline.events import record_event
from hotline.models import Agency, Offer, Ticket, TicketEvent, Town
from hotline.outbox import SUPERVISOR, add_message, schedule_job
from hotline.sla import clocks as sla_clocks
from hotline.tickets import facts_for, lock_ticket, set_status
from hotline.vocabulary import DECLINE_REASONS, FINAL_STATUSES, NEEDS, STATUSES, label

log = logging.getLogger("hotline.dispatch")

DISPATCHABLE_STATUSES = ("new", "in_progress", "dispatching")
# An offer is made with the ticket in dispatching; once an operator moves it on, the offer is void.
ACCEPTING_STATUSES = ("dispatching",)
# Tickets the offer sweep dispatches again; an operator who took one in_progress handles it by hand.
REDISPATCH_STATUSES = ("new", "dispatching")
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
HOLD_TAGS = ("dispatch_escalated", "dispatch_held")
# The shortest time an agency gets to respond to an offer made in the last minute of its duty hours.
MIN_RESPONSE_SECONDS = 60
ACCEPT_WORDS = {"接单", "接", "同意", "ACCEPT", "YES", "Y", "1"}
DECLINE_WORDS = {"拒绝", "拒", "DECLINE", "NO", "N", "2"}
ARRIVE_WORDS = {"到达", "已到", "到", "ARRIVED", "3"}
_CODE_PATTERN = re.compile(rf"(?<![A-Z0-9])[{CODE_ALPHABET}]{{6}}(?![A-Z0-9])")
# Chinese verbs may touch the code ("K7Q2MA接单"); Latin ones and digits must stand alone.
_VERB_PATTERN = re.compile(
    r"接单|接|同意|拒绝|拒|到达|已到|到|(?<![A-Z0-9])(?:ACCEPT|DECLINE|ARRIVED|YES|NO|Y|N|1|2|3)(?![A-Z0-9])"
)
# Words in a decline reason that name its code, checked in this order.
DECLINE_KEYWORDS = (
    ("no_vehicle", ("车",)),
    ("no_staff", ("人手", "人员", "没人", "无人")),
    ("out_of_area", ("范围", "太远", "区域", "不在服务")),
    ("service_not_offered", ("不提供", "不做", "不办")),
)
REPLY_HELP = "回复格式：派单码 接 或 派单码 拒（可附原因），到达现场后回复 派单码 到，例如「K7Q2MA 接」。"


@dataclass(frozen=True)
class OfferAnswer:
    ok: bool
    message: str
    offer: Offer | None = None


def dispatch_ticket(runtime, ticket_id: int, now: datetime) -> Offer | None:
    """Offer the ticket to the next eligible agency, or alert the supervisor when none is left."""
    try:
        with runtime.transaction() as session:
            return _make_next_offer(session, runtime, ticket_id, now)
    except IntegrityError:
        log.info("Dispatch: ticket %s attempt already made by another worker; nothing to do", ticket_id)
        return None


def _make_next_offer(session: Session, runtime, ticket_id: int, now: datetime) -> Offer | None:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return None
    lock_ticket(session, ticket)
    if ticket.category != "agency_service" or ticket.status not in DISPATCHABLE_STATUSES:
        return None
    offers = session.exec(select(Offer).where(Offer.ticket_id == ticket_id).order_by(Offer.attempt)).all()
    if any(offer.state in ("pending", "accepted") for offer in offers):
        return None

    attempt = len(offers) + 1
    tried = {offer.agency_id for offer in offers}
    return offer_to_next_target(session, runtime, ticket, attempt, tried, now)


def offer_to_next_target(session: Session, runtime, ticket: Ticket, attempt: int, exclude: set[int],
                         now: datetime) -> Offer | None:
    """Offer the ticket under the first target with a free agency not in `exclude`, hold it, or escalate."""
    config = runtime.component("dispatch")
    local_now = local(now, runtime.settings.timezone)
    choice = targets.choose(session, config, ticket, facts_for(session, runtime, ticket, now), local_now, exclude)
    if choice.candidate is not None:
        timeout_seconds, reason = _response_window(choice, local_now)
        return make_offer(session, runtime, ticket, choice.candidate.agency, attempt, now,
                          target_id=choice.target.id, timeout_seconds=timeout_seconds, reason=reason)
    if choice.target is not None:
        _hold(session, runtime, ticket, choice.target, now)
        return None
    _escalate(session, runtime, ticket, attempt, now, choice.skipped)
    return None


def _target_reason(choice: targets.Choice) -> str:
    candidate, target = choice.candidate, choice.target
    agency = candidate.agency
    reason = (f"{target.description}：{agency.name}，在岗任务 {candidate.active_jobs}/{agency.capacity}，"
              f"按轮转顺序排第一")
    if choice.skipped:
        reason += f"；此前跳过：{'；'.join(choice.skipped)}"
    return reason


def _response_window(choice: targets.Choice, local_now: datetime) -> tuple[int, str]:
    """Return the seconds the agency has to respond and the offer's reason.

    An offer ends with the agency's duty hours, so a ticket offered near their end goes to the next agency
    when they end, not a whole timeout later. The agency still gets MIN_RESPONSE_SECONDS.
    """
    timeout_seconds, reason = choice.target.timeout_seconds, _target_reason(choice)
    ends = duty_ends_at(choice.candidate.agency, local_now)
    # Timestamps, not a subtraction in one zone, which counts wall-clock time across a DST change.
    left = None if ends is None else int(ends.timestamp() - local_now.timestamp())
    if left is None or left >= timeout_seconds:
        return timeout_seconds, reason
    left = max(MIN_RESPONSE_SECONDS, left)
    return left, f"{reason}；该机构值班至 {ends:%H:%M}，应答时限随之缩短"


def make_offer(session: Session, runtime, ticket: Ticket, agency: Agency, attempt: int, now: datetime,
               target_id: str, timeout_seconds: int, reason: str, actor: str = "dispatch") -> Offer:
    """Insert attempt `attempt` of `ticket` for `agency`, with its event, SMS and dispatch_accept clock."""
    offer = Offer(ticket_id=ticket.id, agency_id=agency.id, attempt=attempt, code=_new_code(session), reason=reason,
                  sent_at=now, accept_by=now + timedelta(seconds=timeout_seconds), target_id=target_id)
    session.add(offer)
    session.flush()

    agency.last_offered_at = now
    session.add(agency)
    if "dispatch_escalated" in (ticket.tags or []) and actor == "dispatch":
        add_message(session, SUPERVISOR, "on_duty",
                    f"【59200496】工单 {ticket.number} 已自动派给 {agency.name}（派单码 {offer.code}），"
                    f"如已人工安排，请在工单页面撤回此派单。",
                    idempotency_key=f"dispatch-after-escalation:{offer.id}", ticket_id=ticket.id)
    ticket.tags = [tag for tag in ticket.tags or [] if tag not in HOLD_TAGS]
    set_status(session, runtime, ticket, "dispatching", actor, system_reasons.OFFERED_TO_AGENCY, now)
    sla_clocks.offer_sent(session, runtime, ticket, now)
    record_event(session, ticket, "offer_sent", actor=actor, to_value=agency.name,
                 reason=reason, at=now,
                 data={"offer_id": offer.id, "agency_id": agency.id, "attempt": attempt, "code": offer.code,
                       "dispatch_target": target_id})
    add_message(session, "sms", agency.contact_phone, offer_sms(session, runtime, ticket, offer),
                idempotency_key=f"offer:{offer.id}:sms", ticket_id=ticket.id)
    log.info("Dispatch: ticket %s attempt %s offered to agency %s under %s (offer %s, code %s)", ticket.number,
             attempt, agency.id, target_id, offer.id, offer.code)
    return offer


def _hold(session: Session, runtime, ticket: Ticket, target, now: datetime) -> None:
    """Keep the ticket on `target`, whose agencies are all busy; the offers sweep tries again later."""
    if "dispatch_held" in (ticket.tags or []):
        return
    ticket.tags = sorted(set(ticket.tags or []) | {"dispatch_held"})
    session.add(ticket)
    set_status(session, runtime, ticket, "dispatching", "dispatch", system_reasons.WAITING_FOR_FREE_AGENCY, now)
    record_event(session, ticket, "dispatch_held", actor="dispatch", to_value=target.id, at=now,
                 reason=f"{target.description}：符合条件的机构均已满额，空出后自动派单")
    log.info("Dispatch: ticket %s held on target %s until an agency is free", ticket.number, target.id)


def _escalate(session: Session, runtime, ticket: Ticket, attempt: int, now: datetime,
              skipped: tuple[str, ...] = ()) -> None:
    """Alert the on-duty supervisor once per attempt; the event lists why each dispatch target was passed over."""
    key = f"dispatch-escalation:{ticket.id}:{attempt}"
    unanswered = session.exec(select(Offer.id).where(Offer.ticket_id == ticket.id)
                              .where(Offer.state.in_(("declined", "timed_out")))).all()
    tried = f"已有 {len(unanswered)} 家拒单或超时未应答，" if unanswered else ""
    # Agencies that declined or let an offer time out are not offered the ticket again automatically,
    # so the notice promises automatic dispatch only for agencies that have not been offered it.
    body = (f"【59200496】工单 {ticket.number} 暂无可接单的代理机构（{tried}其余已满额或不符合条件），"
            f"请值班主管在工单页面人工派单；未派过此单的机构空出时，系统会自动派单并另行通知。")
    if add_message(session, SUPERVISOR, "on_duty", body, idempotency_key=key, ticket_id=ticket.id) is None:
        return
    ticket.tags = sorted(set(ticket.tags or []) | {"dispatch_escalated"})
    session.add(ticket)
    set_status(session, runtime, ticket, "dispatching", "dispatch", system_reasons.WAITING_FOR_MANUAL_DISPATCH, now)
    reason = system_reasons.NO_AGENCY_SUPERVISOR_ALERTED
    if skipped:
        reason += f"。各派单目标：{'；'.join(skipped)}"
    # The column is 500 characters long, and data["skipped"] keeps the whole list.
    record_event(session, ticket, "dispatch_escalated", actor="dispatch", reason=reason[:500],
                 data={"attempt": attempt, "skipped": list(skipped)}, at=now)
    log.warning("Dispatch: ticket %s has no eligible agency after %s attempts; supervisor alerted", ticket.number,
                attempt - 1)


def offer_sms(session: Session, runtime, ticket: Ticket, offer: Offer) -> str:
    """Build the offer SMS: where, what and how to reply. It has no resident name or number before acceptance."""
    town = session.get(Town, ticket.town_code) if ticket.town_code else None
    needs = "、".join(label(NEEDS, need) for need in ticket.needs) or "代理服务"
    deadline = local(offer.accept_by, runtime.settings.timezone).strftime("%H:%M")
    link = offer_link(runtime, offer)
    return (f"【59200496派单】{town.name if town else '地点待确认'}，{needs}，工单 {ticket.number}。"
            f"请在 {deadline} 前回复「{offer.code} 接」接单或「{offer.code} 拒」拒绝，或打开 {link}")


def offer_link(runtime, offer: Offer) -> str:
    base = runtime.settings.public_base_url or "http://127.0.0.1:5000"
    return f"{base}/offers/{offer_token(runtime.settings.secret_key, offer.id)}"


def offer_token(secret_key: str, offer_id: int) -> str:
    return URLSafeSerializer(secret_key, salt="offer").dumps(offer_id)


def offer_id_from_token(secret_key: str, token: str) -> int | None:
    try:
        value = URLSafeSerializer(secret_key, salt="offer").loads(token)
    except BadSignature:
        return None
    return value if isinstance(value, int) else None


class _Rollback(Exception):
    def __init__(self, answer: OfferAnswer):
        super().__init__(answer.message)
        self.answer = answer


def answer_offer(runtime, offer_id: int, accept: bool, actor: str, reason: str | None, now: datetime,
                 decline_code: str | None = None) -> OfferAnswer:
    """Accept or decline a pending offer; a reply after the deadline or to a settled offer changes nothing.

    A decline without `decline_code` gets one read from its reason text (see `decline_code_of`).
    """
    if not accept and decline_code not in DECLINE_REASONS:
        decline_code = decline_code_of(reason)
    try:
        return _answer_offer(runtime, offer_id, accept, actor, reason, now, decline_code)
    except _Rollback as rollback:
        return rollback.answer


def _answer_offer(runtime, offer_id: int, accept: bool, actor: str, reason: str | None, now: datetime,
                  decline_code: str | None) -> OfferAnswer:
    with runtime.transaction() as session:
        offer = session.get(Offer, offer_id)
        if offer is None:
            return OfferAnswer(False, "未找到该派单。")
        # Lock the ticket's row before the offer's, in the order dispatch by hand takes them, so an agency's
        # reply and an operator's withdrawal at the same moment wait in turn instead of deadlocking.
        lock_ticket(session, session.get(Ticket, offer.ticket_id))
        session.refresh(offer)
        if accept:
            rejection = _rejection_out_of_dispatch(session, runtime, offer, now)
            if rejection is not None:
                return OfferAnswer(False, rejection, offer)
        new_state = "accepted" if accept else "declined"
        claimed = session.execute(
            update(Offer)
            .where(Offer.id == offer_id)
            .where(Offer.state == "pending")
            .where(Offer.accept_by > now)
            .values(state=new_state, responded_at=now, response_reason=reason,
                    decline_code=None if accept else decline_code)
        ).rowcount == 1
        session.refresh(offer)
        if not claimed:
            return OfferAnswer(False, f"派单 {offer.code} 已失效（{_state_text(offer.state)}），无需操作。", offer)

        ticket = session.get(Ticket, offer.ticket_id)
        agency = session.get(Agency, offer.agency_id)
        if ticket.status not in ACCEPTING_STATUSES:
            # Withdrawing offers on resolve or cancel makes this rare; the status check closes the gap.
            message = f"工单 {ticket.number} 已无需派单（{label(STATUSES, ticket.status)}），无需操作。"
            raise _Rollback(OfferAnswer(False, message, offer))
        if accept:
            _accepted(session, runtime, ticket, agency, offer, actor, now)
            return OfferAnswer(True, f"已确认接单 {offer.code}，工单 {ticket.number}。请尽快联系家属。", offer)
        record_event(session, ticket, "offer_declined", actor=actor, from_value=agency.name,
                     reason=reason or label(DECLINE_REASONS, decline_code), at=now,
                     data={"offer_id": offer.id, "attempt": offer.attempt, "decline_code": decline_code})
        schedule_job(session, "dispatch_ticket", ticket.id)
        log.info("Dispatch: offer %s declined by agency %s", offer.id, agency.id)
        return OfferAnswer(True, f"已记录拒绝派单 {offer.code}。", offer)


def _rejection_out_of_dispatch(session: Session, runtime, offer: Offer, now: datetime) -> str | None:
    """Word why the agency of `offer` may not accept it now, or return None when it may.

    An agency that was suspended or revoked, or whose filing or licence expired, may not accept. Its
    pending offers are withdrawn by the status change or by the next offer sweep, so a pending offer is
    rejected here only in the seconds before that.
    """
    if offer.state not in ("pending", "cancelled"):
        return None
    agency = session.get(Agency, offer.agency_id)
    cause = out_of_dispatch_reason(agency, local(now, runtime.settings.timezone).date())
    if cause is None:
        return None
    log.info("Dispatch: acceptance of offer %s rejected; agency %s may not receive offers (status %s)", offer.id,
             agency.id, agency.status)
    if offer.state == "cancelled":
        return f"派单 {offer.code} 已撤回，不能接单：{cause}。无需再处理。"
    return f"派单 {offer.code} 不能接单：{cause}。此派单即将撤回，无需再处理。"


def _accepted(session: Session, runtime, ticket: Ticket, agency: Agency, offer: Offer, actor: str,
              now: datetime) -> None:
    ticket.agency_id = agency.id
    session.add(ticket)
    record_event(session, ticket, "offer_accepted", actor=actor, to_value=agency.name, at=now,
                 data={"offer_id": offer.id, "attempt": offer.attempt})
    set_status(session, runtime, ticket, "dispatched", actor, system_reasons.AGENCY_ACCEPTED, now)
    sla_clocks.offer_accepted(session, runtime, ticket, now, actor)
    contact = ticket.caller_phone or "见工单"
    if ticket.caller_phone and ticket.caller_phone_ext:
        contact = f"{contact} 转 {ticket.caller_phone_ext}"
    add_message(session, "sms", agency.contact_phone,
                f"【59200496】已接单 {ticket.number}。联系人：{ticket.caller_name or '家属'}，电话：{contact}，"
                f"地址：{ticket.address or '请电话确认'}。",
                idempotency_key=f"offer:{offer.id}:accepted", ticket_id=ticket.id)
    log.info("Dispatch: offer %s accepted by agency %s for ticket %s", offer.id, agency.id, ticket.number)


def expire_offers(runtime, now: datetime, limit: int = 200) -> int:
    """Time out pending offers past their deadline and move each ticket to its next agency."""
    with runtime.transaction() as session:
        ids = session.exec(
            select(Offer.id).where(Offer.state == "pending").where(Offer.accept_by <= now)
            .order_by(Offer.accept_by).limit(limit)
        ).all()

    expired = 0
    for offer_id in ids:
        try:
            expired += _expire_one(runtime, offer_id, now)
        except Exception:
            log.exception("Dispatch: timing out offer %s failed; the next sweep retries it", offer_id)
    return expired


def _expire_one(runtime, offer_id: int, now: datetime) -> int:
    with runtime.transaction() as session:
        ticket_id = session.exec(select(Offer.ticket_id).where(Offer.id == offer_id)).first()
        if ticket_id is None:
            return 0
        # Locked first, so an operator's action on the ticket never acts on an offer timing out meanwhile.
        lock_ticket(session, session.get(Ticket, ticket_id))
        claimed = session.execute(
            update(Offer).where(Offer.id == offer_id).where(Offer.state == "pending").where(Offer.accept_by <= now)
            .values(state="timed_out", responded_at=now)
        ).rowcount == 1
        if not claimed:
            return 0
        offer = session.get(Offer, offer_id)
        ticket = session.get(Ticket, offer.ticket_id)
        agency = session.get(Agency, offer.agency_id)
        record_event(session, ticket, "offer_timed_out", actor="dispatch", from_value=agency.name, at=now,
                     reason=system_reasons.AGENCY_DID_NOT_ACCEPT, data={"offer_id": offer.id, "attempt": offer.attempt})
        schedule_job(session, "dispatch_ticket", ticket.id)
        log.info("Dispatch: offer %s to agency %s timed out for ticket %s", offer_id, agency.id, ticket.number)
        return 1


def stalled_ticket_ids(runtime, limit: int = 200) -> list[int]:
    """Agency-service tickets waiting for dispatch with no live offer: escalated ones, or a lost job.

    The offers sweep dispatches them again, so a ticket escalated for lack of capacity goes out as soon
    as an agency is free; the escalation notice is keyed by attempt, so the supervisor is not paged again.
    """
    live = select(Offer.ticket_id).where(Offer.state.in_(("pending", "accepted")))
    with runtime.transaction() as session:
        return list(session.exec(
            select(Ticket.id).where(Ticket.category == "agency_service")
            .where(Ticket.status.in_(REDISPATCH_STATUSES)).where(Ticket.id.not_in(live))
            .order_by(Ticket.priority, Ticket.queue_rank, Ticket.due_at).limit(limit)
        ).all())


def answer_sms(runtime, from_phone: str | None, body: str, now: datetime) -> str:
    """Handle an agency's SMS reply such as "K7Q2MA 接", "k7q2ma接单", "拒 K7Q2MA 没有车" or "K7Q2MA 到"."""
    parsed = parse_sms_reply(body)
    if parsed is None:
        return REPLY_HELP
    code, action, reason = parsed

    with runtime.transaction() as session:
        offer = session.exec(select(Offer).where(Offer.code == code)).first()
        agency = session.get(Agency, offer.agency_id) if offer else None
    if offer is None or agency is None or agency.contact_phone != from_phone:
        log.warning("Dispatch: SMS reply with unknown code or from another number (code %s)", code)
        return f"未找到派单码 {code}，请核对短信中的派单码后回复。"
    actor = f"agency:{agency.id}"
    if action == "arrive":
        return record_arrival(runtime, offer.id, actor, now).message
    return answer_offer(runtime, offer.id, action == "accept", actor, reason, now).message


def parse_sms_reply(body: str) -> tuple[str, str, str | None] | None:
    """Find the offer code, the action (accept, decline or arrive) and an optional reason in a reply.

    Return None when the reply has no code or no action word.
    """
    text = unicodedata.normalize("NFKC", body or "").strip().upper()
    codes = [match for match in _CODE_PATTERN.finditer(text) if match.group(0) not in ACCEPT_WORDS]
    code_match = codes[0] if codes else None
    verb_match = _VERB_PATTERN.search(text)
    if code_match is None or verb_match is None:
        return None

    rest = (text[:min(code_match.start(), verb_match.start())] + " "
            + text[max(code_match.end(), verb_match.end()):])
    reason = " ".join(rest.replace(",", " ").split()) or None
    return code_match.group(0), _action(verb_match.group(0)), reason


def decline_code_of(reason: str | None) -> str:
    """Read a decline reason code from an agency's words, such as "车辆不在" (no_vehicle); "other" if unclear."""
    text = reason or ""
    for code, words in DECLINE_KEYWORDS:
        if any(word in text for word in words):
            return code
    return "other"


def _action(verb: str) -> str:
    if verb in ACCEPT_WORDS:
        return "accept"
    return "arrive" if verb in ARRIVE_WORDS else "decline"


def record_arrival(runtime, offer_id: int, actor: str, now: datetime) -> OfferAnswer:
    """Record that the agency of an accepted offer is on site, which meets the ticket's on_site clock.

    A second report changes nothing, and a report for an offer that is not accepted, or for a finished
    ticket, is refused with a message saying why.
    """
    with runtime.transaction() as session:
        offer = session.get(Offer, offer_id)
        if offer is None:
            return OfferAnswer(False, "未找到该派单。")
        if offer.state != "accepted":
            return OfferAnswer(False, f"派单 {offer.code} 未接单（{_state_text(offer.state)}），无法登记到达。", offer)
        ticket = session.get(Ticket, offer.ticket_id)
        if ticket.status in FINAL_STATUSES:
            return OfferAnswer(False, f"工单 {ticket.number} 已{label(STATUSES, ticket.status)}，无需登记到达。", offer)
        if has_arrived(session, ticket.id, offer.id):
            return OfferAnswer(True, f"工单 {ticket.number} 已登记到达现场，无需重复回复。", offer)

        agency = session.get(Agency, offer.agency_id)
        record_event(session, ticket, "agency_arrived", actor=actor, to_value=agency.name, at=now,
                     data={"offer_id": offer.id})
        sla_clocks.mark_met(session, ticket, ["on_site"], now, actor=actor)
        log.info("Dispatch: agency %s on site for ticket %s (offer %s)", agency.id, ticket.number, offer.id)
        return OfferAnswer(True, f"已登记到达现场，工单 {ticket.number}。", offer)


def has_arrived(session: Session, ticket_id: int, offer_id: int) -> bool:
    events = session.exec(
        select(TicketEvent).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "agency_arrived")
    ).all()
    return any((event.data or {}).get("offer_id") == offer_id for event in events)


def _new_code(session: Session) -> str:
    while True:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
        if session.exec(select(Offer.id).where(Offer.code == code)).first() is None:
            return code


def _state_text(state: str) -> str:
    return {"pending": "待应答", "accepted": "已接单", "declined": "已拒绝", "timed_out": "已超时",
            "cancelled": "已撤销"}.get(state, state)
