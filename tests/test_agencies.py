"""The agency registry: credit codes, vetting status and history, expiry, reminders, CLI and API roles."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import time_machine
from apscheduler.triggers.cron import CronTrigger
from click.testing import CliRunner
from sqlmodel import select

from hotline import agencies, credit_codes
from hotline.agency_reminders import send_expiry_reminders
from hotline.cli import main
from hotline.models import Agency, AgencyStatusChange, Offer, OutboxMessage, User
from hotline.tickets import create_ticket
from hotline.tokens import create_token
from hotline.validation import InputError
from workers import scheduler as scheduler_module

MONDAY_MORNING = datetime.fromisoformat("2026-12-07T09:00:00+08:00")
LIANTANG = "310118103"
FUSHUN = "练塘福顺礼仪服务社"
DIANSHANHU = "上海淀山湖殡葬代理有限公司"
# Written out here rather than taken from the module, so the tests check the module's arithmetic.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
NEW_AGENCY = {
    "name": "青浦福寿殡葬服务有限公司",
    "kind": "agency",
    "credit_code": None,  # set by the fixture below, with its check character
    "filing_number": "青民殡备〔2026〕009号",
    "filing_expires_on": "2027-06-30",
    "licence_expires_on": "2036-01-01",
    "towns": ["练塘镇", "310118110"],
    "services": ["body_transport", "ash_storage"],
    "price_list_url": "https://qpbz.example/price-lists/fushou.pdf",
    "duty_hours": "07:00-22:00",
    "capacity": 2,
    "contact_phone": "139 0000 0009",
    "other_phones": ["021-59201234"],
}


def wrong_check(code: str) -> str:
    """The code with another check character."""
    return code[:-1] + ("1" if code[-1] == "0" else "0")


def with_check(first_17: str) -> str:
    """A credit code made from 17 characters and the check character computed by hand."""
    total = sum(ALPHABET.index(character) * weight for character, weight in zip(first_17, WEIGHTS, strict=True))
    return first_17 + ALPHABET[(31 - total % 31) % 31]


@pytest.fixture
def new_agency():
    return {**NEW_AGENCY, "credit_code": with_check("91310118MA1K00009")}


@pytest.fixture
def admin_token(runtime, seeded):
    with runtime.transaction() as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
        return create_token(session, "admin", role="admin", user_id=admin.id)


def _agency(runtime, name: str) -> Agency:
    with runtime.transaction() as session:
        return session.exec(select(Agency).where(Agency.name == name)).one()


def _set(runtime, name: str, **values) -> None:
    with runtime.transaction() as session:
        agency = session.exec(select(Agency).where(Agency.name == name)).one()
        for key, value in values.items():
            setattr(agency, key, value)
        session.add(agency)


def _history(runtime, agency_id: int) -> list[AgencyStatusChange]:
    with runtime.transaction() as session:
        return session.exec(select(AgencyStatusChange).where(AgencyStatusChange.agency_id == agency_id)
                            .order_by(AgencyStatusChange.id)).all()


def _count(runtime, model, *conditions) -> int:
    with runtime.transaction() as session:
        return len(session.exec(select(model).where(*conditions)).all())


# --- credit codes ---------------------------------------------------------------------------------


def test_credit_code_worked_example():
    # GB 32100-2015's worked example: the first 17 characters sum to 1640, and 31 - 1640 mod 31 = 3.
    assert credit_codes.check_character("91350100M000100Y4") == "3"
    assert credit_codes.normalise("91350100M000100Y43") == "91350100M000100Y43"


@pytest.mark.parametrize("first_17", ["91310118MA1K00001", "12310118MB2F00001", "52310118MJ5A1234X",
                                      "93310118MA1KY0T0W", "Y1310118000000000"])
def test_credit_code_constructed_valid(first_17):
    code = with_check(first_17)

    assert credit_codes.check_character(first_17) == code[-1]
    assert credit_codes.normalise(code) == code


def test_credit_code_check_value_31_is_0():
    # Find a prefix whose weighted sum is a multiple of 31: its check character is "0", not the 32nd one.
    prefix = next(p for p in (f"91310118MA1K{n:05d}" for n in range(100000)) if with_check(p).endswith("0"))

    assert credit_codes.check_character(prefix) == "0"


def test_credit_code_every_single_change_detected():
    code = with_check("91310118MA1K00001")
    for position in range(18):
        for character in ALPHABET:
            if character == code[position]:
                continue
            changed = code[:position] + character + code[position + 1:]
            if position in range(2, 8) and not character.isdigit():
                continue
            with pytest.raises(credit_codes.InvalidCreditCode) as caught:
                credit_codes.normalise(changed)
            assert caught.value.problem == "check", changed


def test_credit_code_normalises_typing():
    code = with_check("91310118MA1K00001")
    full_width = "".join(chr(ord(character) + 0xFEE0) for character in code.lower())

    assert credit_codes.normalise(f"  {code.lower()} ") == code
    assert credit_codes.normalise(full_width) == code


@pytest.mark.parametrize(("text", "problem"), [
    ("91310118MA1K0001", "length"),
    ("91310118MA1K000011X", "length"),
    ("91310118MA1KO0001X", "character"),  # the letter O is never used
    ("91310118MA1KI0001X", "character"),
    ("913101A8MA1K00001X", "character"),  # characters 3 to 8 are the division code, all digits
])
def test_credit_code_rejected(text, problem):
    with pytest.raises(credit_codes.InvalidCreditCode) as caught:
        credit_codes.normalise(text)

    assert caught.value.problem == problem


def test_seeded_credit_codes_valid(runtime, seeded):
    with runtime.transaction() as session:
        codes = [agency.credit_code for agency in session.exec(select(Agency)).all()]

    assert len(codes) == 4
    for code in codes:
        assert credit_codes.normalise(code) == code


# --- registration and status machine --------------------------------------------------------------


def test_create_stores_clean_fields(runtime, seeded, new_agency):
    with time_machine.travel(MONDAY_MORNING, tick=False), runtime.transaction() as session:
        agency = agencies.create_agency(session, new_agency, "user:3", None, MONDAY_MORNING)
        agency_id = agency.id

    with runtime.transaction() as session:
        agency = session.get(Agency, agency_id)
    assert agency.status == "pending"
    assert agency.towns == ["310118103", "310118110"]
    assert agency.services == ["body_transport", "ash_storage"]
    assert agency.contact_phone == "+8613900000009"
    assert agency.other_phones == ["+862159201234"]
    assert agency.filing_expires_on == date(2027, 6, 30)
    assert agency.duty_hours == "07:00-22:00"
    [created] = _history(runtime, agency_id)
    assert (created.from_status, created.to_status, created.actor) == (None, "pending", "user:3")
    assert created.at == MONDAY_MORNING


@pytest.mark.parametrize(("field", "value", "code"), [
    ("credit_code", wrong_check(with_check("91310118MA1K00009")), "invalid_credit_code"),
    ("credit_code", None, "required"),
    ("filing_expires_on", "2027/06/30", "invalid_date"),
    ("filing_expires_on", "2027-02-30", "invalid_date"),
    ("price_list_url", "ftp://qpbz.example/p.pdf", "invalid_url"),
    ("price_list_url", None, "required"),
    ("duty_hours", "8:00-20:00", "invalid_duty_hours"),
    ("duty_hours", "08:00-08:00", "invalid_duty_hours"),
    ("contact_phone", "021-59200496", "invalid_phone"),  # a landline cannot receive offer SMS
    ("contact_phone", "12345", "invalid_phone"),
    ("other_phones", ["021-59200496转8001"], "invalid_phone"),
    ("contact_phone", "13900000009 / 13900000010", "multiple_phones"),
    ("other_phones", ["021-59201234，021-59201235"], "multiple_phones"),
    ("towns", ["朱家角"], "invalid_value"),
    ("towns", [], "required"),
    ("services", ["subsidy_info"], "invalid_value"),
    ("capacity", -1, "invalid_value"),
    ("capacity", True, "invalid_value"),
    ("kind", "crematorium", "invalid_value"),
    ("score", 5, "unknown_field"),
])
def test_create_rejects_field(runtime, seeded, new_agency, field, value, code):
    body = {**new_agency, field: value}

    with pytest.raises(InputError) as caught, runtime.transaction() as session:
        agencies.create_agency(session, body, "user:3", None, MONDAY_MORNING)

    assert caught.value.code == code
    assert caught.value.field == field
    assert _count(runtime, Agency, Agency.name == new_agency["name"]) == 0


def test_funeral_home_needs_no_filing(runtime, seeded):
    body = {"name": "区殡仪馆第二接运组", "kind": "funeral_home", "towns": ["*"], "services": ["body_transport"],
            "contact_phone": "13900000020"}

    with runtime.transaction() as session:
        agency = agencies.create_agency(session, body, "user:3", None, MONDAY_MORNING)

    assert agency.towns == ["*"]
    assert agency.credit_code is None


def test_duplicate_name_and_code_rejected(runtime, seeded, new_agency):
    existing = _agency(runtime, FUSHUN)
    cases = {"name": {**new_agency, "name": FUSHUN}, "credit_code": {**new_agency, "credit_code": existing.credit_code}}

    for field, body in cases.items():
        with pytest.raises(InputError) as caught, runtime.transaction() as session:
            agencies.create_agency(session, body, "user:3", None, MONDAY_MORNING)
        assert (caught.value.code, caught.value.status, caught.value.field) == ("already_exists", 409, field)


ALLOWED = {
    ("pending", "approved"), ("pending", "revoked"),
    ("approved", "watch"), ("approved", "suspended"), ("approved", "revoked"),
    ("watch", "approved"), ("watch", "suspended"), ("watch", "revoked"),
    ("suspended", "approved"), ("suspended", "watch"), ("suspended", "revoked"),
}


@pytest.mark.parametrize("from_status", list(agencies.STATUSES))
def test_status_transitions_table(runtime, seeded, from_status):
    agency_id = _agency(runtime, FUSHUN).id
    for to_status in agencies.STATUSES:
        _set(runtime, FUSHUN, status=from_status)
        with runtime.transaction() as session:
            agency = session.get(Agency, agency_id)
            try:
                agencies.change_status(session, agency, to_status, "检查", "user:2", 2, MONDAY_MORNING)
                applied = True
            except InputError as error:
                assert (error.code, error.status, error.field) == ("invalid_transition", 409, "status")
                applied = False
        assert applied == ((from_status, to_status) in ALLOWED), (from_status, to_status)


def test_status_history_records_each_change(runtime, seeded):
    agency_id = _agency(runtime, FUSHUN).id
    steps = [("watch", "家属投诉接运迟到", MONDAY_MORNING),
             ("suspended", "核查属实，暂停派单", MONDAY_MORNING + timedelta(days=1)),
             ("approved", "整改完成", MONDAY_MORNING + timedelta(days=8))]

    for to_status, reason, at in steps:
        with time_machine.travel(at, tick=False), runtime.transaction() as session:
            agencies.change_status(session, session.get(Agency, agency_id), to_status, f"  {reason} ", "user:2", 2, at)

    history = _history(runtime, agency_id)
    assert [(row.from_status, row.to_status) for row in history] == [
        (None, "pending"), ("pending", "approved"), ("approved", "watch"), ("watch", "suspended"),
        ("suspended", "approved")]
    assert [row.reason for row in history[2:]] == [reason for _, reason, _ in steps]
    assert [row.at for row in history[2:]] == [at for _, _, at in steps]
    assert {row.user_id for row in history[2:]} == {2}
    assert _agency(runtime, FUSHUN).status == "approved"


@pytest.mark.parametrize(("status", "reason", "code", "field"), [
    ("approved", "   ", "reason_required", "reason"),
    ("approved", None, "reason_required", "reason"),
    ("closed", "原因", "invalid_value", "status"),
    ("approved", "长" * 501, "too_long", "reason"),
])
def test_status_change_rejected(runtime, seeded, status, reason, code, field):
    _set(runtime, FUSHUN, status="suspended")
    agency_id = _agency(runtime, FUSHUN).id

    with pytest.raises(InputError) as caught, runtime.transaction() as session:
        agencies.change_status(session, session.get(Agency, agency_id), status, reason, "user:2", 2, MONDAY_MORNING)

    assert (caught.value.code, caught.value.field) == (code, field)
    assert _agency(runtime, FUSHUN).status == "suspended"
    assert len(_history(runtime, agency_id)) == 2


def test_concurrent_status_change_conflicts(runtime, seeded):
    # The first supervisor read the agency as approved; the second suspends it before the first one writes.
    stale = _agency(runtime, FUSHUN)
    with runtime.transaction() as session:
        agencies.change_status(session, session.get(Agency, stale.id), "suspended", "投诉", "user:2", 2,
                               MONDAY_MORNING)

    with pytest.raises(InputError) as caught, runtime.transaction() as session:
        agencies.change_status(session, stale, "watch", "另一位主管", "user:3", 3, MONDAY_MORNING)

    assert caught.value.code == "conflict"
    assert _agency(runtime, FUSHUN).status == "suspended"
    assert [row.to_status for row in _history(runtime, stale.id)][-1] == "suspended"


# --- expiry and dispatch --------------------------------------------------------------------------


def _offered_agency(runtime, at: datetime) -> str:
    """Create a body-transport ticket in 练塘 at `at` and return the name of the agency offered it."""
    with time_machine.travel(at, tick=False), runtime.transaction() as session:
        ticket = create_ticket(session, runtime, at, actor="test", channel="referral_api", source="community_worker",
                               category="agency_service", needs=["body_transport"], town_code=LIANTANG,
                               caller_phone="+8613812345678")
        ticket_id = ticket.id
    with runtime.transaction() as session:
        offer = session.exec(select(Offer).where(Offer.ticket_id == ticket_id)).one()
        return session.get(Agency, offer.agency_id).name


@pytest.mark.parametrize("document", ["filing_expires_on", "licence_expires_on"])
def test_expiry_day_leaves_dispatch(runtime, seeded, document):
    # Only 练塘福顺 serves 练塘 besides 淀山湖, which is suspended here, so each offer shows whether it is in.
    _set(runtime, DIANSHANHU, status="suspended")
    _set(runtime, FUSHUN, **{document: date(2026, 12, 8)})
    last_second_before = datetime.fromisoformat("2026-12-07T23:59:59+08:00")
    expiry_midnight = datetime.fromisoformat("2026-12-08T00:00:00+08:00")

    assert _offered_agency(runtime, last_second_before) == FUSHUN
    # 00:00 in Shanghai is 16:00 of the day before in UTC, so only the local date takes the agency out here.
    assert _offered_agency(runtime, expiry_midnight) == "青浦区殡仪馆接运服务队"


def test_watch_dispatched_suspended_not(runtime, seeded):
    _set(runtime, DIANSHANHU, status="suspended")
    _set(runtime, FUSHUN, status="watch")
    assert _offered_agency(runtime, MONDAY_MORNING) == FUSHUN

    _set(runtime, FUSHUN, status="suspended")
    assert _offered_agency(runtime, MONDAY_MORNING) == "青浦区殡仪馆接运服务队"


def test_may_receive_offers_boundary():
    agency = Agency(name="x", kind="agency", status="approved", contact_phone="+8613900000009",
                    filing_expires_on=date(2026, 12, 8), licence_expires_on=None)

    assert agencies.may_receive_offers(agency, date(2026, 12, 7))
    assert not agencies.may_receive_offers(agency, date(2026, 12, 8))
    assert agencies.expired_documents(agency, date(2026, 12, 8)) == ["filing"]
    agency.status = "pending"
    assert not agencies.may_receive_offers(agency, date(2026, 12, 7))


# --- expiry reminders -----------------------------------------------------------------------------


def _reminders(runtime) -> list[OutboxMessage]:
    with runtime.transaction() as session:
        return session.exec(select(OutboxMessage).where(OutboxMessage.idempotency_key.like("agency-expiry:%"))
                            .order_by(OutboxMessage.id)).all()


def _remind(runtime, day: str) -> int:
    at = datetime.fromisoformat(f"{day}T09:00:00+08:00")
    with time_machine.travel(at, tick=False):
        return send_expiry_reminders(runtime, at)


def test_reminder_at_30_days_once(runtime, seeded):
    _set(runtime, FUSHUN, filing_expires_on=date(2027, 1, 6))

    assert _remind(runtime, "2026-12-06") == 0  # 31 days left
    assert _remind(runtime, "2026-12-07") == 1  # 30 days left
    assert _remind(runtime, "2026-12-07") == 0

    [message] = _reminders(runtime)
    assert message.recipient == "+8613900000011"
    assert message.channel == "sms"
    assert FUSHUN in message.body
    assert "备案" in message.body
    assert "2027-01-06" in message.body
    assert "还剩 30 天" in message.body
    assert ":filing:2027-01-06:30d:user:" in message.idempotency_key


def test_reminder_thresholds_and_catch_up(runtime, seeded):
    _set(runtime, FUSHUN, licence_expires_on=date(2027, 1, 6))

    assert _remind(runtime, "2026-12-10") == 1  # 27 days: the missed 30-day reminder is caught up
    assert _remind(runtime, "2026-12-20") == 0
    assert _remind(runtime, "2026-12-30") == 1  # 7 days
    assert _remind(runtime, "2027-01-05") == 0
    assert _remind(runtime, "2027-01-06") == 0  # expired today: already out of dispatch

    keys = [message.idempotency_key for message in _reminders(runtime)]
    assert [key.split(":")[4] for key in keys] == ["30d", "7d"]
    assert all(":licence:2027-01-06:" in key for key in keys)


def test_reminder_inside_7_days_sends_only_7(runtime, seeded):
    _set(runtime, FUSHUN, filing_expires_on=date(2026, 12, 10))

    assert _remind(runtime, "2026-12-07") == 1

    [message] = _reminders(runtime)
    assert ":7d:" in message.idempotency_key


def test_renewed_document_reminded_again(runtime, seeded):
    _set(runtime, FUSHUN, filing_expires_on=date(2027, 1, 6))
    assert _remind(runtime, "2026-12-07") == 1

    _set(runtime, FUSHUN, filing_expires_on=date(2028, 1, 6))
    assert _remind(runtime, "2027-12-07") == 1
    assert len(_reminders(runtime)) == 2


def test_reminder_per_admin_none_for_revoked(runtime, seeded):
    _set(runtime, FUSHUN, filing_expires_on=date(2027, 1, 6))
    _set(runtime, DIANSHANHU, filing_expires_on=date(2027, 1, 6), status="revoked")
    with runtime.transaction() as session:
        session.add(User(username="admin2", display_name="管理员二", role="admin", phone="+8613900000012",
                         password_hash="x"))
        session.add(User(username="admin3", display_name="停用管理员", role="admin", phone="+8613900000013",
                         password_hash="x", active=False))

    assert _remind(runtime, "2026-12-07") == 2

    assert sorted(message.recipient for message in _reminders(runtime)) == ["+8613900000011", "+8613900000012"]


def test_reminder_without_admin_phone_waits(runtime, seeded, caplog):
    _set(runtime, FUSHUN, filing_expires_on=date(2027, 1, 6))
    with runtime.transaction() as session:
        admin = session.exec(select(User).where(User.username == "admin")).one()
        admin.phone = None
        session.add(admin)

    assert _remind(runtime, "2026-12-07") == 0
    assert "no active admin has a phone" in caplog.text


def test_daily_job_scheduled_in_shanghai(runtime):
    scheduler = scheduler_module.build_scheduler(runtime, background=True)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job("daily-agency-expiry")
        trigger = job.trigger
        fields = {field.name: str(field) for field in trigger.fields}
        next_run = trigger.get_next_fire_time(None, datetime.fromisoformat("2026-12-07T08:59:00+08:00"))
    finally:
        scheduler.shutdown(wait=False)

    assert isinstance(trigger, CronTrigger)
    assert str(trigger.timezone) == "Asia/Shanghai"
    assert fields["day_of_week"] == "mon,tue,wed,thu,fri,sat,sun"
    assert (fields["hour"], fields["minute"]) == ("9", "0")
    assert job.misfire_grace_time >= 30
    assert job.coalesce is True
    assert next_run == datetime.fromisoformat("2026-12-07T09:00:00+08:00")


# --- CLI ------------------------------------------------------------------------------------------


def _cli(*args: str, language: str | None = None):
    return CliRunner().invoke(main, ["agencies", *args], env={"HOTLINE_CLI_LANGUAGE": language})


def test_cli_create_list_and_status(runtime, seeded, new_agency):
    created = _cli("create", "--name", new_agency["name"], "--kind", "agency", "--credit-code",
                   new_agency["credit_code"].lower(), "--filing-number", "青民殡备〔2026〕009号",
                   "--filing-expires-on", "2027-06-30", "--town", "练塘镇", "--town", "白鹤镇",
                   "--service", "body_transport", "--price-list-url", new_agency["price_list_url"],
                   "--duty-hours", "00:00-24:00", "--capacity", "2", "--contact-phone", "13900000009",
                   "--other-phone", "021-59201234", "--by", "admin")
    assert created.exit_code == 0, created.output
    assert "已登记" in created.output
    assert "待审核" in created.output

    for command, reason, label_text in (("approve", "材料齐全", "已准入"), ("watch", "投诉待查", "观察期"),
                                        ("suspend", "投诉属实", "已暂停"), ("revoke", "备案注销", "已撤销资格")):
        result = _cli(command, new_agency["name"], "--reason", reason, "--by", "supervisor")
        assert result.exit_code == 0, result.output
        assert label_text in result.output

    listed = _cli("list")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].split()[:4] == ["编号", "名称", "类型", "状态"]
    assert new_agency["name"] in listed.output
    assert "夏阳街道、盈浦街道" in listed.output

    agency_id = _agency(runtime, new_agency["name"]).id
    history = _cli("history", str(agency_id))
    assert history.exit_code == 0, history.output
    lines = history.output.splitlines()
    assert len(lines) == 2 + 5
    assert "备案注销" in lines[-1]
    assert "supervisor" in lines[-1]
    assert "+08:00" in lines[-1]


def test_cli_rejects_and_writes_nothing(runtime, seeded, new_agency):
    bad_code = _cli("create", "--name", new_agency["name"], "--kind", "agency", "--credit-code",
                    wrong_check(new_agency["credit_code"]), "--filing-number", "x", "--filing-expires-on", "2027-06-30",
                    "--town", "练塘镇", "--service", "body_transport", "--price-list-url",
                    new_agency["price_list_url"], "--contact-phone", "13900000009", "--by", "admin")
    assert bad_code.exit_code == 1
    assert "校验码" in bad_code.output
    assert _count(runtime, Agency, Agency.name == new_agency["name"]) == 0

    no_reason = _cli("suspend", FUSHUN, "--by", "supervisor")
    assert no_reason.exit_code == 2
    assert "--reason" in no_reason.output

    operator = _cli("suspend", FUSHUN, "--reason", "投诉", "--by", "operator")
    assert operator.exit_code == 1
    assert "operator" in operator.output

    supervisor_update = _cli("update", FUSHUN, "--capacity", "5", "--by", "supervisor")
    assert supervisor_update.exit_code == 1

    to_watch = _cli("watch", FUSHUN, "--reason", "x", "--by", "admin")
    assert to_watch.exit_code == 0, to_watch.output
    from_watch = _cli("watch", FUSHUN, "--reason", "x", "--by", "admin")
    assert from_watch.exit_code == 1
    assert "watch" in from_watch.output

    assert _agency(runtime, FUSHUN).status == "watch"
    assert _agency(runtime, FUSHUN).capacity == 2


def test_cli_in_english(runtime, seeded):
    listed = _cli("list", language="en")
    watched = _cli("watch", FUSHUN, "--reason", "投诉待查", "--by", "supervisor", language="en")
    by_operator = _cli("approve", FUSHUN, "--reason", "x", "--by", "operator", language="en")
    unknown = _cli("history", "无此机构", language="en")

    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].split()[:4] == ["ID", "Agency", "name", "Kind"]
    assert "Funeral agency" in listed.output
    assert watched.exit_code == 0, watched.output
    assert watched.output.splitlines()[0].endswith(": Approved → On watch")
    assert by_operator.exit_code == 1
    assert "User operator has the role Operator; only these roles may do this: Supervisor, Administrator." \
        in by_operator.output
    assert unknown.exit_code == 1
    assert "No agency 无此机构; `hotline agencies list` shows the IDs and names." in unknown.output


def test_cli_update_names_changed_options(runtime, seeded):
    result = _cli("update", FUSHUN, "--capacity", "3", "--other-phone", "021-59201234", "--by", "admin")

    assert result.exit_code == 0, result.output
    assert result.output.endswith("：--capacity、--other-phone\n")


def test_cli_update_renews_filing(runtime, seeded):
    result = _cli("update", FUSHUN, "--filing-expires-on", "2029-12-31", "--licence-expires-on", "", "--by", "admin")

    assert result.exit_code == 0, result.output
    agency = _agency(runtime, FUSHUN)
    assert agency.filing_expires_on == date(2029, 12, 31)
    assert agency.licence_expires_on is None


# --- API ------------------------------------------------------------------------------------------


def _auth(token: str, language: str = "zh-CN") -> dict:
    return {"Authorization": f"Bearer {token}", "Accept-Language": language}


def test_api_list_keeps_shape_and_adds_fields(client, seeded):
    response = client.get("/api/v1/agencies", headers=_auth(seeded["operator"]))

    assert response.status_code == 200
    body = response.get_json()
    assert body["next"] is None
    item = next(item for item in body["items"] if item["name"] == FUSHUN)
    for key in ("id", "name", "kind", "status", "towns", "services", "capacity", "contact_phone", "credit_code",
                "filing_number", "licence_expires_on", "last_offered_at"):
        assert key in item
    assert item["towns"] == ["310118103", "310118110"]
    assert item["town_names"] == ["练塘镇", "白鹤镇"]
    assert item["filing_expires_on"] == "2030-12-31"
    assert item["price_list_url"].startswith("https://")
    assert item["duty_hours"] == "00:00-24:00"
    assert item["status_label"] == "已准入"
    assert item["may_receive_offers"] is True


def test_api_get_one_with_history(client, seeded, runtime):
    agency_id = _agency(runtime, FUSHUN).id

    response = client.get(f"/api/v1/agencies/{agency_id}", headers=_auth(seeded["operator"], "en"))

    assert response.status_code == 200
    body = response.get_json()
    assert [(row["from"], row["to"]) for row in body["history"]] == [(None, "pending"), ("pending", "approved")]
    assert body["history"][1]["actor"] == "seed"
    assert body["history"][1]["at"].endswith("+08:00")
    assert body["allowed_statuses"] == ["watch", "suspended", "revoked"]
    assert body["status_label"] == "Approved"
    assert client.get("/api/v1/agencies/9999", headers=_auth(seeded["operator"])).status_code == 404


def test_api_create_roles(client, seeded, admin_token, new_agency, runtime):
    for role in ("operator", "supervisor"):
        denied = client.post("/api/v1/agencies", json=new_agency, headers=_auth(seeded[role]))
        assert denied.status_code == 403, role
    by_source = client.post("/api/v1/agencies", json=new_agency, headers=_auth(seeded["community_worker"]))
    assert by_source.status_code == 403
    assert _count(runtime, Agency, Agency.name == new_agency["name"]) == 0

    created = client.post("/api/v1/agencies", json=new_agency, headers=_auth(admin_token))

    assert created.status_code == 201
    body = created.get_json()
    assert created.headers["Location"].endswith(f"/api/v1/agencies/{body['id']}")
    assert body["status"] == "pending"
    assert body["history"][0]["user"] == "admin"
    assert body["allowed_statuses"] == ["approved", "revoked"]


def test_api_create_error_names_field(client, seeded, admin_token, new_agency, runtime):
    body = {**new_agency, "credit_code": wrong_check(new_agency["credit_code"])}

    chinese = client.post("/api/v1/agencies", json=body, headers=_auth(admin_token))
    english = client.post("/api/v1/agencies", json=body, headers=_auth(admin_token, "en"))
    duplicate = client.post("/api/v1/agencies", json={**new_agency, "name": FUSHUN}, headers=_auth(admin_token))

    assert chinese.status_code == 422
    assert chinese.get_json()["error"]["field"] == "credit_code"
    assert chinese.get_json()["error"]["code"] == "invalid_credit_code"
    assert "校验码" in chinese.get_json()["error"]["message"]
    assert "check character" in english.get_json()["error"]["message"]
    assert duplicate.status_code == 409
    assert duplicate.get_json()["error"]["field"] == "name"
    assert _count(runtime, Agency, Agency.name == new_agency["name"]) == 0


def test_api_status_roles(client, seeded, admin_token, runtime):
    agency_id = _agency(runtime, FUSHUN).id
    url = f"/api/v1/agencies/{agency_id}/status"

    denied = client.post(url, json={"status": "suspended", "reason": "投诉"}, headers=_auth(seeded["operator"]))
    assert denied.status_code == 403
    assert _agency(runtime, FUSHUN).status == "approved"

    by_supervisor = client.post(url, json={"status": "suspended", "reason": "投诉属实"},
                                headers=_auth(seeded["supervisor"]))
    assert by_supervisor.status_code == 200
    assert by_supervisor.get_json()["status"] == "suspended"
    assert by_supervisor.get_json()["may_receive_offers"] is False
    assert by_supervisor.get_json()["history"][-1]["user"] == "supervisor"

    by_admin = client.post(url, json={"status": "approved", "reason": "整改完成"}, headers=_auth(admin_token))
    assert by_admin.status_code == 200
    assert [row["to"] for row in by_admin.get_json()["history"]][-2:] == ["suspended", "approved"]


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"status": "suspended"}, 422, "reason_required", "reason"),
    ({"status": "pending", "reason": "x"}, 409, "invalid_transition", "status"),
    ({"status": "gone", "reason": "x"}, 422, "invalid_value", "status"),
    ({"status": "suspended", "reason": "x", "by": "me"}, 422, "unknown_field", "by"),
])
def test_api_status_errors(client, seeded, runtime, body, status, code, field):
    agency_id = _agency(runtime, FUSHUN).id

    response = client.post(f"/api/v1/agencies/{agency_id}/status", json=body, headers=_auth(seeded["supervisor"]))

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["field"] == field
    assert _agency(runtime, FUSHUN).status == "approved"
    assert len(_history(runtime, agency_id)) == 2


def test_api_status_error_in_english(client, seeded, runtime):
    agency_id = _agency(runtime, FUSHUN).id

    response = client.post(f"/api/v1/agencies/{agency_id}/status", json={"status": "approved"},
                           headers=_auth(seeded["supervisor"], "en"))

    assert response.get_json()["error"]["message"] == "A reason is required to change the status of an agency."


def test_api_patch_admin_only(client, seeded, admin_token, runtime):
    agency_id = _agency(runtime, FUSHUN).id
    url = f"/api/v1/agencies/{agency_id}"

    assert client.patch(url, json={"capacity": 4}, headers=_auth(seeded["supervisor"])).status_code == 403
    status_in_patch = client.patch(url, json={"status": "revoked"}, headers=_auth(admin_token))
    renewed = client.patch(url, json={"filing_expires_on": "2031-06-30", "capacity": 4}, headers=_auth(admin_token))

    assert status_in_patch.status_code == 422
    assert renewed.status_code == 200
    assert renewed.get_json()["filing_expires_on"] == "2031-06-30"
    assert _agency(runtime, FUSHUN).capacity == 4
    assert _agency(runtime, FUSHUN).status == "approved"
