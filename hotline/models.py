"""Tables of the hotline. Every instant is stored as aware UTC (SQLModel's UTCDateTime)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, column, text
from sqlmodel import Field, SQLModel

from hotline.clock import now
from hotline.nulls_last import NullsLast
from hotline.vocabulary import OPEN_STATUSES


# Default factories for JSON columns. They are Python functions instead of the builtins `list` and `dict`,
# because pydantic (2.14) reads a default factory's signature each time it builds a default, and
# `inspect.signature` of a builtin parses its text signature. Building a Ticket with three such defaults
# took 459 µs with the builtins and 120 µs with these functions (scripts run on a 2-CPU VM).
def empty_list() -> list:
    return []


def empty_dict() -> dict:
    return {}


class Town(SQLModel, table=True):
    """A township-level unit (街道 or 镇) of Qingpu, keyed by its statistical code."""

    code: str = Field(primary_key=True, max_length=9)
    name: str = Field(unique=True, max_length=32)
    pilot: bool = Field(default=False, description="Agencies are piloted here.")


# The predicate of the open queue's partial index. A query must name the same statuses to use it, and on
# SQLite as literals (hotline.tickets.is_open).
OPEN_TICKET_PREDICATE = "status IN ({})".format(", ".join(f"'{status}'" for status in OPEN_STATUSES))


class Ticket(SQLModel, table=True):
    __table_args__ = (
        Index("ix_ticket_queue", "status", "priority", "queue_rank", "due_at"),
        Index("ix_ticket_caller_open", "caller_phone", "status"),
        # Both hold the order of hotline.tickets.queue_order, so a queue page is read off the index, not sorted.
        # NullsLast renders due_at as `due_at IS NULL, due_at` on SQLite, so there both are expression indexes.
        # NOTE: SQLAlchemy does not reflect SQLite expression indexes. So an Alembic batch operation that
        # recreates the ticket table on SQLite drops both, and its revision must create them again.
        Index("ix_ticket_open_queue", "priority", "queue_rank", NullsLast(column("due_at")), "created_at", "id",
              postgresql_where=text(OPEN_TICKET_PREDICATE), sqlite_where=text(OPEN_TICKET_PREDICATE)),
        Index("ix_ticket_queue_order", "priority", "queue_rank", NullsLast(column("due_at")), "created_at", "id"),
        # The dashboard counts tickets per day of intake.
        Index("ix_ticket_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=20)
    channel: str = Field(max_length=20)
    source: str = Field(max_length=24, index=True)
    category: str = Field(max_length=24, index=True)
    needs: list[str] = Field(default_factory=empty_list, sa_type=JSON)
    flags: list[str] = Field(default_factory=empty_list, sa_type=JSON)
    tags: list[str] = Field(default_factory=empty_list, sa_type=JSON)
    town_code: str | None = Field(default=None, foreign_key="town.code", max_length=9, index=True)
    committee: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=200)
    caller_name: str | None = Field(default=None, max_length=64)
    caller_phone: str | None = Field(default=None, max_length=20)
    caller_phone_ext: str | None = Field(default=None, max_length=10)
    note: str | None = Field(default=None, max_length=2000)
    deceased: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    external_id: str | None = Field(default=None, max_length=64, index=True)

    priority: int = Field(default=3, ge=1, le=4)
    queue_rank: int = Field(default=100, description="Precedence within a priority; lower is served first.")
    priority_reasons: list[dict[str, Any]] = Field(default_factory=empty_list, sa_type=JSON)
    rule_trace: list[dict[str, Any]] = Field(default_factory=empty_list, sa_type=JSON)
    rule_set_version: str | None = Field(default=None, max_length=16)

    status: str = Field(default="new", max_length=16)
    due_at: datetime | None = Field(default=None, description="Earliest due instant of the running SLA clocks.")
    assigned_to_id: int | None = Field(default=None, foreign_key="user.id")
    claimed_at: datetime | None = None
    agency_id: int | None = Field(default=None, foreign_key="agency.id")
    chosen_agency_id: int | None = Field(default=None, foreign_key="agency.id",
                                         description="The agency the family asked for, offered first if eligible.")
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    resolved_at: datetime | None = None
    merged_into_id: int | None = Field(default=None, foreign_key="ticket.id", index=True,
                                       description="The ticket this duplicate was merged into; it is then cancelled.")


class TicketCounter(SQLModel, table=True):
    """Last ticket number handed out per local day (QP-YYYYMMDD-NNNN); an upsert makes two requests never share one."""

    day: str = Field(primary_key=True, max_length=8)
    last: int = 0


class TicketEvent(SQLModel, table=True):
    """One change to a ticket: who made it, when, from what, to what and why."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = Field(default_factory=now)
    actor: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    from_value: str | None = Field(default=None, max_length=200)
    to_value: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=500)
    data: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class Referral(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_referral_source_external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=24)
    external_id: str = Field(max_length=64)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    token_id: int | None = Field(default=None, foreign_key="apitoken.id")
    referrer_name: str | None = Field(default=None, max_length=64)
    referrer_phone: str | None = Field(default=None, max_length=20)
    referrer_org: str | None = Field(default=None, max_length=100)
    payload: dict[str, Any] = Field(default_factory=empty_dict, sa_type=JSON)
    received_at: datetime = Field(default_factory=now)


class Call(SQLModel, table=True):
    # Every new ticket counts its caller's calls of the last 30 days for the rules (tickets.caller_history).
    __table_args__ = (Index("ix_call_from_phone_started", "from_phone", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    call_sid: str = Field(unique=True, max_length=64)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    from_phone: str | None = Field(default=None, max_length=20)
    to_phone: str | None = Field(default=None, max_length=20)
    status: str = Field(default="ringing", max_length=20)
    menu_digit: str | None = Field(default=None, max_length=4)
    duration_seconds: int | None = None
    started_at: datetime = Field(default_factory=now)
    ended_at: datetime | None = None


class Agency(SQLModel, table=True):
    """A funeral agency or the funeral home's own team that may receive dispatch offers.

    An expiry date is the date printed on the document. The agency leaves dispatch at the start of that
    day in the hotline's time zone, and None means the document does not expire (长期).
    """

    __table_args__ = (UniqueConstraint("credit_code", name="uq_agency_credit_code"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    kind: str = Field(max_length=16)
    credit_code: str | None = Field(default=None, max_length=18, description="统一社会信用代码 (GB 32100-2015).")
    filing_number: str | None = Field(default=None, max_length=40, description="Filing (备案) number.")
    filing_expires_on: date | None = None
    licence_expires_on: date | None = Field(default=None, description="Business licence (营业执照) term.")
    status: str = Field(default="pending", max_length=16)
    towns: list[str] = Field(default_factory=empty_list, sa_type=JSON, description="Town codes, or ['*'] for all.")
    services: list[str] = Field(default_factory=empty_list, sa_type=JSON)
    price_list_url: str | None = Field(default=None, max_length=300, description="Published price list (明码标价).")
    duty_hours: str | None = Field(default=None, max_length=11,
                                   description="Daily window HH:MM-HH:MM in the hotline's time zone; None if unknown.")
    capacity: int = Field(default=1, ge=0)
    contact_phone: str = Field(max_length=20, description="Mobile in E.164 that receives offer SMS and replies.")
    other_phones: list[str] = Field(default_factory=empty_list, sa_type=JSON,
                                    description="Further numbers in E.164 for staff to call; offers never go there.")
    last_offered_at: datetime | None = None
    created_at: datetime = Field(default_factory=now)


class AgencyStatusChange(SQLModel, table=True):
    """One change of an agency's vetting status; the first row of an agency records its creation."""

    id: int | None = Field(default=None, primary_key=True)
    agency_id: int = Field(foreign_key="agency.id", index=True)
    from_status: str | None = Field(default=None, max_length=16, description="None on the row of creation.")
    to_status: str = Field(max_length=16)
    reason: str = Field(max_length=500)
    actor: str = Field(max_length=64)
    user_id: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = Field(default_factory=now)


class Offer(SQLModel, table=True):
    """A dispatch offer of one ticket to one agency; (ticket, attempt) is unique so a rerun job makes no second one."""

    __table_args__ = (
        UniqueConstraint("ticket_id", "attempt", name="uq_offer_ticket_attempt"),
        Index("ix_offer_pending_deadline", "accept_by", postgresql_where=text("state = 'pending'"),
              sqlite_where=text("state = 'pending'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    agency_id: int = Field(foreign_key="agency.id", index=True)
    attempt: int
    code: str = Field(unique=True, max_length=8)
    state: str = Field(default="pending", max_length=16)
    reason: str = Field(max_length=300, description="Why this agency was chosen.")
    sent_at: datetime = Field(default_factory=now)
    accept_by: datetime
    responded_at: datetime | None = None
    response_reason: str | None = Field(default=None, max_length=300)
    decline_code: str | None = Field(default=None, max_length=24)
    target_id: str | None = Field(default=None, max_length=64, description="The dispatch target, or 'manual'.")


class SlaClock(SQLModel, table=True):
    """One SLA target of one ticket; the sweep reads the partial indexes over running, unbreached clocks."""

    __table_args__ = (
        UniqueConstraint("ticket_id", "target", name="uq_sla_clock_ticket_target"),
        Index("ix_sla_clock_due_open", "due_at",
              postgresql_where=text("state = 'running' AND breached_at IS NULL"),
              sqlite_where=text("state = 'running' AND breached_at IS NULL")),
        Index("ix_sla_clock_check_open", "next_check_at",
              postgresql_where=text("state = 'running' AND breached_at IS NULL"),
              sqlite_where=text("state = 'running' AND breached_at IS NULL")),
        Index("ix_sla_clock_provisional_open", "id",
              postgresql_where=text("provisional AND state IN ('running', 'paused')"),
              sqlite_where=text("provisional AND state IN ('running', 'paused')")),
        # The dashboard's on-time and first-response charts select clocks decided or started in a period.
        # Partial indexes leave out the running clocks that every intake writes.
        Index("ix_sla_clock_breached_at", "breached_at", postgresql_where=text("breached_at IS NOT NULL"),
              sqlite_where=text("breached_at IS NOT NULL")),
        Index("ix_sla_clock_met_at", "met_at", postgresql_where=text("met_at IS NOT NULL"),
              sqlite_where=text("met_at IS NOT NULL")),
        Index("ix_sla_clock_first_response_started", "started_at",
              postgresql_where=text("target = 'first_response'"), sqlite_where=text("target = 'first_response'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    target: str = Field(max_length=24)
    policy: str = Field(max_length=64)
    calendar: str = Field(max_length=32)
    duration_seconds: int
    started_at: datetime
    due_at: datetime
    state: str = Field(default="running", max_length=16)
    paused_at: datetime | None = None
    paused_seconds: int = 0
    breached_at: datetime | None = None
    met_at: datetime | None = None
    provisional: bool = False
    owner: str = Field(default="hotline", max_length=16, description="Who must meet the target: hotline or agency.")
    warn_at: datetime | None = Field(default=None, description="When the at-risk warning is due; None for no warning.")
    warned_at: datetime | None = None
    next_check_at: datetime | None = Field(default=None, description="When the sweep next looks at this clock.")


class OutboxMessage(SQLModel, table=True):
    """A side effect written in the same commit as the change that caused it, delivered later by a job."""

    __table_args__ = (
        Index("ix_outbox_pending", "next_attempt_at", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=24)
    recipient: str = Field(max_length=200)
    body: str = Field(max_length=2000)
    idempotency_key: str = Field(unique=True, max_length=120)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=now)
    last_error: str | None = Field(default=None, max_length=500)
    provider_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=now)
    sent_at: datetime | None = None


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=64)
    display_name: str = Field(max_length=64)
    role: str = Field(max_length=24)
    password_hash: str = Field(max_length=256)
    phone: str | None = Field(default=None, max_length=20)
    on_duty: bool = False
    active: bool = True
    town_code: str | None = Field(default=None, foreign_key="town.code", max_length=9,
                                  description="Referrers only: the town (街镇) they serve.")
    committee: str | None = Field(default=None, max_length=64,
                                  description="Referrers only: their residents' (居委) or village (村委) committee.")
    session_version: int = Field(default=0, description="Stored in each login session; raising it ends them all.")
    created_at: datetime = Field(default_factory=now)


class ApiToken(SQLModel, table=True):
    """A bearer token, stored only as its SHA-256 digest; it belongs to a source or to a staff role.

    `scopes` lists what a source token may do (hotline.tokens.SCOPES). Staff tokens keep it empty,
    because their role decides what they may do.
    """

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=12)
    name: str = Field(max_length=100)
    source: str | None = Field(default=None, max_length=24)
    role: str | None = Field(default=None, max_length=16)
    scopes: list[str] = Field(default_factory=empty_list, sa_type=JSON)
    user_id: int | None = Field(default=None, foreign_key="user.id", description="Staff member acting with it.")
    created_at: datetime = Field(default_factory=now)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class Webhook(SQLModel, table=True):
    """The URL to which a platform token's referral status changes are POSTed, one per token.

    The secret signs every delivery (HMAC-SHA256), so it is stored as issued: it is shown once, when
    the webhook is registered, and a new registration replaces it.
    """

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="apitoken.id", unique=True)
    source: str = Field(max_length=24, index=True, description="The token's referral source.")
    url: str = Field(max_length=500)
    secret: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)


class LoginAttempt(SQLModel, table=True):
    """One try at the staff login page, kept for audit and for the lockout after repeated failures.

    `outcome` is ok, bad_password, unknown_user, inactive or locked. The username is stored as typed,
    so failures against a name that does not exist lock it out just like a real one.
    """

    __table_args__ = (Index("ix_loginattempt_username_at", "username", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64)
    user_id: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = Field(default_factory=now)
    succeeded: bool = False
    outcome: str = Field(max_length=16)
    remote_addr: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=200)


class UserChange(SQLModel, table=True):
    """One change an admin made to a staff or referrer account, kept as its audit trail.

    `action` is unlocked, deactivated, activated, password_reset or token_revoked. `actor` is "user:ID" of
    the admin. `detail` names what a token_revoked row revoked: the token's prefix and name.
    """

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    action: str = Field(max_length=24)
    actor: str = Field(max_length=64)
    at: datetime = Field(default_factory=now)
    remote_addr: str | None = Field(default=None, max_length=45, description="None for a change made by the CLI.")
    detail: str | None = Field(default=None, max_length=200)


class RuleSetVersion(SQLModel, table=True):
    """The rule files behind one rule set version, stored when a ticket is first evaluated with it.

    `version` is the content hash that tickets keep in `rule_set_version`; `files` maps each *.yaml
    file name of the rules folder to its text, so the version's rules can be read and shown later.
    """

    version: str = Field(primary_key=True, max_length=16)
    files: dict[str, str] = Field(default_factory=empty_dict, sa_type=JSON)
    rules_dir: str = Field(max_length=300, description="Folder the files were read from.")
    first_used_at: datetime = Field(default_factory=now)


class ChecklistItem(SQLModel, table=True):
    """One item of a ticket's 帮办 checklist for the 公民身故一件事 bundle.

    Names, office and documents are copied from routing_rules/assisted_application.yaml when the
    checklist is made, so a later edit of that file leaves existing checklists as they were.
    """

    __table_args__ = (UniqueConstraint("ticket_id", "code", name="uq_checklist_item_ticket_code"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    code: str = Field(max_length=40)
    position: int
    title: str = Field(max_length=100)
    title_en: str = Field(max_length=100)
    short_names: list[str] = Field(default_factory=empty_list, sa_type=JSON,
                                   description="Other names a resolve reason may use for the item.")
    office: str = Field(max_length=500)
    documents: list[str] = Field(default_factory=empty_list, sa_type=JSON)
    status: str = Field(default="todo", max_length=16)
    note: str | None = Field(default=None, max_length=500)
    updated_by: str | None = Field(default=None, max_length=64, description="Actor of the last change.")
    updated_at: datetime | None = None
    created_at: datetime = Field(default_factory=now)


class KbArticle(SQLModel, table=True):
    """A knowledge article (便民服务信息) as last saved; each save also adds a KbArticleVersion row."""

    id: int | None = Field(default=None, primary_key=True)
    category: str = Field(max_length=24, index=True)
    title: str = Field(max_length=100)
    summary: str = Field(max_length=500)
    body: str = Field(max_length=20000)
    sources: list[dict[str, str]] = Field(default_factory=empty_list, sa_type=JSON,
                                          description="Each source as {'name': ..., 'url': ...}.")
    checked_on: date = Field(description="Date the facts were last checked against the sources.")
    status: str = Field(default="published", max_length=16)
    version: int = 1
    created_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    updated_by: str = Field(max_length=64)


class KbArticleVersion(SQLModel, table=True):
    """One saved version of a knowledge article, kept so earlier wording can be read again."""

    __table_args__ = (UniqueConstraint("article_id", "version", name="uq_kb_article_version"),)

    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="kbarticle.id", index=True)
    version: int
    category: str = Field(max_length=24)
    title: str = Field(max_length=100)
    summary: str = Field(max_length=500)
    body: str = Field(max_length=20000)
    sources: list[dict[str, str]] = Field(default_factory=empty_list, sa_type=JSON)
    checked_on: date
    status: str = Field(max_length=16)
    change_note: str | None = Field(default=None, max_length=200)
    saved_by: str = Field(max_length=64)
    saved_at: datetime = Field(default_factory=now)


class KbTerm(SQLModel, table=True):
    """A search term of an article's current text: a CJK character or bigram, or a Latin word or number."""

    article_id: int = Field(foreign_key="kbarticle.id", primary_key=True)
    term: str = Field(primary_key=True, max_length=32, index=True)
    in_title: bool = False
